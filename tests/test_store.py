"""The message store: each transition's rows, events and mailbox entries, on a real SQLite file."""

from __future__ import annotations

import dataclasses

import pytest
from support.model_rows import event_types, webhook_channel

from messagepusher.accounts.users import open_accounts
from messagepusher.actors.ingest import Draft
from messagepusher.messages import lifecycle, store
from messagepusher.supervisor.clock import FakeClock
from messagepusher.supervisor.config import load_settings
from messagepusher.supervisor.models import (
    Channel,
    Delivery,
    MailboxEntry,
    Message,
    MessageEvent,
    User,
)
from messagepusher.supervisor.runtime import Runtime

NOW = 1_700_000_000.0


@pytest.fixture
def runtime(tmp_path):
    rt = Runtime(load_settings(environ={"MP_DATA_DIR": str(tmp_path)}), clock=FakeClock(NOW))
    rt.open_storage()
    open_accounts(rt)
    yield rt
    rt.db.close()


@pytest.fixture
def user(runtime) -> User:
    return User.create(username="alice", password_hash="x", created_at=NOW, updated_at=NOW)


def channel(runtime, user: User, name: str, fallback: Channel | None = None, **kw) -> Channel:
    return webhook_channel(
        runtime, user, name, f"http://127.0.0.1:9/{name}", NOW, fallback=fallback, **kw
    )


def accept(runtime, user, channels, **draft) -> store.Stored:
    with runtime.db.atomic():
        (stored,) = store.accept(
            runtime.mailbox, [store.NewMessage(Draft(user_id=user.id, **draft), channels)], NOW
        )
    return stored


def entries(recipient: str) -> list[MailboxEntry]:
    return list(
        MailboxEntry.select().where(MailboxEntry.recipient == recipient).order_by(MailboxEntry.id)
    )


def statuses(message_id: int) -> list[str]:
    return [
        d.status
        for d in Delivery.select().where(Delivery.message == message_id).order_by(Delivery.id)
    ]


# --- accept -----------------------------------------------------------------------------------


def test_accept_stores_the_message_its_deliveries_an_event_and_one_send_per_delivery(runtime, user):
    a, b = channel(runtime, user, "a"), channel(runtime, user, "b")
    stored = accept(runtime, user, [a, b], title="hi", priority=4)
    message = Message.get_by_id(stored.id)
    assert (stored.status, stored.wake) == ("queued", ("channel_pool",))
    assert (message.status, message.accepted_status, message.title) == ("queued", "queued", "hi")
    deliveries = list(Delivery.select().where(Delivery.message == stored.id).order_by(Delivery.id))
    assert [(d.channel_name, d.status) for d in deliveries] == [("a", "pending"), ("b", "pending")]
    sends = entries("channel_pool")
    assert [e.payload["delivery_id"] for e in sends] == [d.id for d in deliveries]
    assert {e.priority for e in sends} == {4} and {e.user_id for e in sends} == {user.id}
    assert event_types(stored.id) == ["accepted"]


def test_accept_of_a_message_with_a_url_queues_the_fetch_and_no_send(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a")], url="http://example.org/")
    assert (stored.status, stored.wake) == ("accepted", ("fetcher",))
    assert [e.payload for e in entries("fetcher")] == [{"message_id": stored.id}]
    assert entries("channel_pool") == []


def test_accept_of_a_later_send_at_is_scheduled_and_waits_until_then(runtime, user):
    later = NOW + 3600
    stored = accept(runtime, user, [channel(runtime, user, "a")], send_at=later)
    assert (stored.status, stored.wake) == ("scheduled", ())
    assert [e.available_at for e in entries("channel_pool")] == [later]
    event = MessageEvent.get(MessageEvent.message == stored.id)
    assert (event.type, event.detail["send_at"]) == ("scheduled", later)


def open_lessee(owner: str = "here/channel_pool#1", room: int = 4, **kw) -> store.LeasedSends:
    told: list[int] = kw.pop("told", [])
    lessee = store.LeasedSends()
    lessee.open(owner, room, kw.pop("accepts", lambda _type: True), lambda: told.append(1))
    return lessee


def accept_leased(runtime, user, lessee, *drafts) -> list[store.Stored]:
    with runtime.db.atomic():
        return store.accept(
            runtime.mailbox,
            [store.NewMessage(Draft(user_id=user.id, **d), chans) for chans, d in drafts],
            NOW,
            lessee,
            90.0,
        )


def test_accept_leases_a_fresh_send_to_an_idle_pool_in_the_same_transaction(runtime, user):
    a, b = channel(runtime, user, "a"), channel(runtime, user, "b")
    lessee = open_lessee(room=2)
    (stored,) = accept_leased(runtime, user, lessee, ([a, b], {"title": "now", "priority": 4}))
    assert (stored.status, stored.wake, stored.sends) == ("queued", (), ())
    message = Message.get_by_id(stored.id)
    assert (message.status, message.accepted_status) == ("sending", "queued")
    assert statuses(stored.id) == ["sending", "sending"]
    rows = entries("channel_pool")
    assert [(e.state, e.lease_owner, e.attempts) for e in rows] == [
        ("leased", "here/channel_pool#1", 1)
    ] * 2
    for e in rows:  # the lease runs from the mailbox's clock, as a claim's would
        assert e.lease_expires_at == pytest.approx(e.created_at + 90)
        assert (e.available_at, e.priority) == (e.lease_expires_at, 4)
    assert [s.entry.id for s in stored.leased] == [e.id for e in rows]
    assert [
        (s.owner, s.row.channel_name, s.row.status, s.row.message_status) for s in stored.leased
    ] == [
        ("here/channel_pool#1", "a", "sending", "sending"),
        ("here/channel_pool#1", "b", "sending", "sending"),
    ]
    assert [s.entry.payload for s in stored.leased] == [
        {"delivery_id": s.row.delivery_id, "message_id": stored.id} for s in stored.leased
    ]
    assert event_types(stored.id) == ["accepted"]
    assert not lessee.has_room()


def test_accept_leases_only_what_the_pool_has_room_for_and_queues_the_rest(runtime, user):
    a, b = channel(runtime, user, "a"), channel(runtime, user, "b")
    lessee = open_lessee(room=2)
    first, second, third = accept_leased(
        runtime,
        user,
        lessee,
        ([a], {"title": "1"}),
        ([a, b], {"title": "2"}),
        ([b], {"title": "3"}),
    )
    assert [bool(s.leased) for s in (first, second, third)] == [True, False, True]
    assert second.wake == ("channel_pool",) and len(second.sends) == 2
    assert Message.get_by_id(second.id).status == "queued"
    assert [e.state for e in entries("channel_pool")] == ["ready", "ready", "leased", "leased"]


def test_accept_queues_what_is_paused_scheduled_or_of_a_type_the_pool_does_not_take(runtime, user):
    a, held = channel(runtime, user, "a"), channel(runtime, user, "held")
    runtime.mailbox.pause("test", channel_id=held.id)
    lessee = open_lessee(room=10, accepts=lambda channel_type: channel_type != "webhook")
    (refused,) = accept_leased(runtime, user, lessee, ([a], {"title": "type"}))
    assert refused.leased == ()
    lessee = open_lessee(room=10)
    paused, later, url, fine = accept_leased(
        runtime,
        user,
        lessee,
        ([held], {"title": "paused"}),
        ([a], {"title": "later", "send_at": NOW + 60}),
        ([a], {"title": "fetch first", "url": "http://example.org/"}),
        ([a], {"title": "fine"}),
    )
    assert [bool(s.leased) for s in (paused, later, url, fine)] == [False, False, False, True]
    runtime.mailbox.pause("test", mailbox="channel_pool")
    (whole_pool,) = accept_leased(runtime, user, lessee, ([a], {"title": "pool paused"}))
    assert whole_pool.leased == ()


def owner(n: int) -> str:
    """An owner string built at run time: equal to another of the same n, not the same object."""
    return "".join(["pool#", str(n)])


def test_leased_sends_wait_for_their_owner_and_tell_it_once_per_put(runtime, user):
    a = channel(runtime, user, "a")
    told: list[int] = []
    lessee = open_lessee(owner(1), room=3, told=told)
    stored = accept_leased(runtime, user, lessee, ([a], {"title": "1"}), ([a], {"title": "2"}))
    lessee.put([])
    assert told == []
    lessee.put(s for row in stored for s in row.leased)
    assert told == [1]
    assert lessee.take(owner(2)) == ([], True)  # another incarnation's: it recovers them
    lessee.put(s for row in stored for s in row.leased)
    assert lessee.take(owner(0)) == ([], True)
    lessee.put(s for row in stored for s in row.leased)
    mine, stale = lessee.take(owner(1))
    assert ([s.row.title for s in mine], stale) == (["1", "2"], False)
    assert lessee.take(owner(1)) == ([], False)


def test_leased_sends_room_and_close_belong_to_the_open_owner_only():
    lessee = open_lessee(owner(2), room=1)
    lessee.set_room(owner(1), 5)  # an earlier incarnation's late word changes nothing
    lessee.set_room(owner(3), 5)
    assert lessee.reserve(["webhook"]) == owner(2)
    assert lessee.reserve(["webhook"]) is None and not lessee.has_room()
    lessee.set_room(owner(2), 2)
    assert lessee.reserve(["webhook", "webhook", "webhook"]) is None  # a message is all or none
    assert lessee.close(owner(1)) == [] and lessee.close(owner(3)) == []
    assert lessee.reserve(["webhook", "webhook"]) == owner(2)
    lessee.set_room(owner(2), 2)
    assert lessee.close(owner(2)) == []
    assert lessee.reserve(["webhook"]) is None and not lessee.has_room()


def test_closing_hands_back_what_waits_for_that_owner_and_keeps_the_others(runtime, user):
    a = channel(runtime, user, "a")
    leased = []
    lessee = open_lessee(owner(1), room=1)
    for n, title in ((1, "old"), (3, "newer"), (2, "new")):
        lessee.open(owner(n), 1, lambda _type: True, lambda: None)
        leased += accept_leased(runtime, user, lessee, ([a], {"title": title}))[0].leased
    lessee.put(leased)
    assert [s.row.title for s in lessee.close(owner(2))] == ["new"]
    assert lessee.close(owner(2)) == []  # handed back once
    assert lessee.reserve(["webhook"]) is None  # closed: nothing is leased any more
    mine, stale = lessee.take(owner(3))
    assert ([s.row.title for s in mine], stale) == (["newer"], True)  # "old" is stale


# --- stages -----------------------------------------------------------------------------------


def test_start_work_shows_the_stage_on_open_messages_only(runtime, user):
    a = channel(runtime, user, "a")
    open_one = accept(runtime, user, [a], url="http://example.org/").id
    cancelled = accept(runtime, user, [a], url="http://example.org/").id
    assert store.cancel(runtime.mailbox, cancelled, "test", NOW)
    store.start_work([open_one, cancelled], "fetch", NOW + 1)
    assert Message.get_by_id(open_one).status == "fetching"
    assert Message.get_by_id(cancelled).status == "cancelled"
    assert event_types(open_one) == ["accepted", "fetching"]


def test_a_fetched_page_is_kept_and_the_ai_step_follows_when_asked_for(runtime, user):
    stored = accept(
        runtime,
        user,
        [channel(runtime, user, "a")],
        url="http://example.org/",
        ai={"task": "summarize"},
    )
    fetched = {"status": "ok", "title": "T", "text": "abc", "error": None}
    wake = store.record_fetched(runtime.mailbox, stored.id, fetched, NOW + 1)
    message = Message.get_by_id(stored.id)
    assert wake == {"ai_pool"} and message.fetched == fetched
    assert message.status == "ai_processing"
    assert [e.payload for e in entries("ai_pool")] == [{"message_id": stored.id}]
    assert event_types(stored.id) == ["accepted", "fetched"]


def test_after_the_fetch_without_ai_each_pending_delivery_is_queued_for_sending(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a")], url="http://example.org/")
    failed = {"status": "error", "title": None, "text": None, "error": "boom"}
    assert store.record_fetched(runtime.mailbox, stored.id, failed, NOW + 1) == {"channel_pool"}
    (delivery,) = Delivery.select().where(Delivery.message == stored.id)
    assert [e.payload["delivery_id"] for e in entries("channel_pool")] == [delivery.id]
    assert Message.get_by_id(stored.id).status == "queued"
    assert event_types(stored.id) == ["accepted", "fetch_failed", "queued"]


def test_a_failed_ai_step_with_on_failure_fail_fails_the_pending_deliveries_and_the_message(
    runtime, user
):
    stored = accept(runtime, user, [channel(runtime, user, "a")], ai={"task": "summarize"})
    result = {"status": "error", "task": "summarize", "provider": "local", "error": "down"}
    message = Message.get_by_id(stored.id)
    store.record_ai_result(runtime.mailbox, message, result, "summarize", True, NOW + 1)
    assert statuses(stored.id) == ["failed"]
    assert Message.get_by_id(stored.id).status == "failed"
    assert event_types(stored.id) == ["accepted", "ai_failed", "failed"]
    assert entries("channel_pool") == []


def test_an_ai_result_queues_the_send(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a")], ai={"task": "summarize"})
    result = {"status": "ok", "task": "summarize", "provider": "local", "error": None}
    message = Message.get_by_id(stored.id)
    wake = store.record_ai_result(runtime.mailbox, message, result, "summarize", True, NOW + 1)
    assert wake == {"channel_pool"} and len(entries("channel_pool")) == 1
    assert Message.get_by_id(stored.id).ai_result == result
    assert event_types(stored.id) == ["accepted", "ai_done", "queued"]


# --- sending ----------------------------------------------------------------------------------


def test_mark_sending_moves_deliveries_and_open_messages_to_sending(runtime, user):
    a = channel(runtime, user, "a")
    stored = accept(runtime, user, [a])
    (delivery,) = Delivery.select().where(Delivery.message == stored.id)
    store.mark_sending([delivery.id], [stored.id], NOW + 1)
    assert statuses(stored.id) == ["sending"]
    assert Message.get_by_id(stored.id).status == "sending"


def outcome_batch(runtime, message_ids, record):
    with runtime.db.atomic():
        batch = store.SendOutcomes.open(set(message_ids), NOW + 2)
        record(batch)
        return batch.commit(runtime.mailbox)


def test_all_deliveries_sent_make_the_message_delivered_and_queue_its_callback(runtime, user):
    a, b = channel(runtime, user, "a"), channel(runtime, user, "b")
    stored = accept(runtime, user, [a, b], callback_url="http://127.0.0.1:9/cb")
    ids = [d.id for d in Delivery.select().where(Delivery.message == stored.id)]

    def record(batch):
        for delivery_id in ids:
            batch.record(delivery_id, "sent", 1, "delivery_sent", {}, 200, None, None, "r1")

    assert outcome_batch(runtime, [stored.id], record) == {"channel_pool"}
    message = Message.get_by_id(stored.id)
    assert (message.status, message.finished_at) == ("delivered", NOW + 2)
    assert statuses(stored.id) == ["sent", "sent"]
    assert Delivery.get_by_id(ids[0]).remote_id == "r1"
    (callback,) = [e for e in entries("channel_pool") if e.kind == "callback"]
    assert callback.dedupe_key == f"callback:{stored.id}"
    assert event_types(stored.id) == ["accepted", "delivery_sent", "delivery_sent", "delivered"]


def sent_and_another(
    runtime, user, status: str, event: str, error: str
) -> tuple[store.Stored, int]:
    """A message to channels a and b, a's delivery sent and b's given `status` in one outcome
    batch; the message and b's delivery id."""
    stored = accept(runtime, user, [channel(runtime, user, "a"), channel(runtime, user, "b")])
    first, second = [d.id for d in Delivery.select().where(Delivery.message == stored.id)]
    outcome_batch(
        runtime,
        [stored.id],
        lambda b: (
            b.record(first, "sent", 1, "delivery_sent", {}),
            b.record(second, status, 1, event, {}, error=error),
        ),
    )
    return stored, second


def test_one_sent_and_one_still_pending_leave_the_message_open(runtime, user):
    stored, second = sent_and_another(runtime, user, "pending", "delivery_retry", "503")
    assert Message.get_by_id(stored.id).status == "queued"
    assert Delivery.get_by_id(second).last_error == "503"


def test_a_sent_and_a_failed_delivery_end_partially_failed(runtime, user):
    stored, _second = sent_and_another(runtime, user, "failed", "delivery_failed", "400")
    assert Message.get_by_id(stored.id).status == "partially_failed"


def test_a_failed_delivery_goes_to_its_channels_fallback_and_the_message_waits_for_it(
    runtime, user
):
    backup = channel(runtime, user, "backup")
    main = channel(runtime, user, "main", fallback=backup)
    stored = accept(runtime, user, [main])
    (failed,) = [d.id for d in Delivery.select().where(Delivery.message == stored.id)]
    wake = outcome_batch(
        runtime,
        [stored.id],
        lambda b: b.record(failed, "dead", 5, "delivery_dead", {}, error="gave up"),
    )
    assert wake == {"channel_pool"}
    new = Delivery.get((Delivery.message == stored.id) & (Delivery.fallback_of == failed))
    assert (new.channel_name, new.status) == ("backup", "pending")
    assert [e.payload["delivery_id"] for e in entries("channel_pool")][-1] == new.id
    assert Message.get_by_id(stored.id).status == "queued"
    assert event_types(stored.id)[-2:] == ["delivery_dead", "fallback"]

    outcome_batch(runtime, [stored.id], lambda b: b.record(new.id, "sent", 1, "delivery_sent", {}))
    assert Message.get_by_id(stored.id).status == "delivered"  # the fallback counts for it


def test_a_fallback_chain_does_not_come_back_to_a_channel_it_passed(runtime, user):
    first = channel(runtime, user, "first")
    second = channel(runtime, user, "second", fallback=first)
    first.fallback = second
    first.save()
    stored = accept(runtime, user, [first])
    (d1,) = [d.id for d in Delivery.select().where(Delivery.message == stored.id)]
    outcome_batch(runtime, [stored.id], lambda b: b.record(d1, "failed", 1, "delivery_failed", {}))
    d2 = Delivery.get(Delivery.fallback_of == d1).id
    outcome_batch(runtime, [stored.id], lambda b: b.record(d2, "failed", 1, "delivery_failed", {}))
    assert Delivery.select().where(Delivery.message == stored.id).count() == 2
    assert Message.get_by_id(stored.id).status == "failed"


def test_outcomes_of_a_deleted_message_are_not_recorded(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a")])
    (delivery,) = Delivery.select().where(Delivery.message == stored.id)
    store.purge_messages([stored.id])
    with runtime.db.atomic():
        batch = store.SendOutcomes.open({stored.id}, NOW)
    assert not batch.exists(delivery.id)


def test_finish_if_final_reads_the_deliveries_and_leaves_an_open_one_open(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a"), channel(runtime, user, "b")])
    first = Delivery.select().where(Delivery.message == stored.id).order_by(Delivery.id).first()
    Delivery.update(status="sent").where(Delivery.id == first.id).execute()
    with runtime.db.atomic():
        assert store.finish_if_final(runtime.mailbox, {stored.id}, NOW) == set()
    assert Message.get_by_id(stored.id).status == "queued"
    Delivery.update(status="sent").where(Delivery.message == stored.id).execute()
    with runtime.db.atomic():
        store.finish_if_final(runtime.mailbox, {stored.id}, NOW)
    assert Message.get_by_id(stored.id).status == "delivered"


def test_a_callback_outcome_of_a_purged_message_is_not_recorded(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a")])
    store.record_callback(stored.id, "callback_sent", {"attempt": 1}, NOW)
    assert event_types(stored.id)[-1] == "callback_sent"
    store.purge_messages([stored.id])
    store.record_callback(stored.id, "callback_sent", {"attempt": 2}, NOW)
    assert MessageEvent.select().count() == 0


# --- hand intervention ------------------------------------------------------------------------


def test_retry_requeues_failed_deliveries_not_replaced_by_a_fallback(runtime, user):
    a, b, c = (channel(runtime, user, n) for n in "abc")
    stored = accept(runtime, user, [a, b, c])
    da, db_, dc = [d.id for d in Delivery.select().where(Delivery.message == stored.id)]
    Delivery.update(status="sent").where(Delivery.id == da).execute()
    Delivery.update(status="dead", attempts=5, last_error="x").where(Delivery.id == db_).execute()
    Delivery.update(status="failed", attempts=1).where(Delivery.id == dc).execute()
    Delivery.create(
        message=stored.id,
        channel_name="a",
        channel_type="webhook",
        status="sent",
        fallback_of=dc,
        created_at=NOW,
        updated_at=NOW,
    )
    Message.update(status="partially_failed", finished_at=NOW).where(
        Message.id == stored.id
    ).execute()
    before = len(entries("channel_pool"))
    assert store.retry(runtime.mailbox, Message.get_by_id(stored.id), "ops", NOW + 5) == [db_]
    retried = Delivery.get_by_id(db_)
    assert (retried.status, retried.attempts, retried.last_error) == ("pending", 0, None)
    message = Message.get_by_id(stored.id)
    assert (message.status, message.finished_at) == ("queued", None)
    assert [e.payload["delivery_id"] for e in entries("channel_pool")[before:]] == [db_]
    event = MessageEvent.select().order_by(MessageEvent.id.desc()).first()
    assert (event.type, event.detail) == ("retry", {"deliveries": [db_], "by": "ops"})


def test_retry_with_nothing_failed_writes_nothing(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a")])
    assert store.retry(runtime.mailbox, Message.get_by_id(stored.id), "ops", NOW) == []
    assert event_types(stored.id) == ["accepted"]


def test_cancel_cancels_what_is_unsent_once(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a"), channel(runtime, user, "b")])
    first = Delivery.select().where(Delivery.message == stored.id).order_by(Delivery.id).first()
    Delivery.update(status="sent").where(Delivery.id == first.id).execute()
    assert store.cancel(runtime.mailbox, stored.id, "ops", NOW)
    assert statuses(stored.id) == ["sent", "cancelled"]
    assert Message.get_by_id(stored.id).status == "cancelled"
    assert event_types(stored.id) == ["accepted", "cancel_requested", "cancelled"]
    assert not store.cancel(runtime.mailbox, stored.id, "ops", NOW)
    assert event_types(stored.id) == ["accepted", "cancel_requested", "cancelled"]


def test_an_edit_keeps_the_new_text_and_both_changes_go_on_the_timeline(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a")], title="old", body="old")
    changes = {1: {"action": "edit", "status": "edited", "detail": ""}}
    store.record_change(stored.id, "edit", "ops", changes, NOW, ("new", "text"))
    message = Message.get_by_id(stored.id)
    assert (message.title, message.body) == ("new", "text")
    store.record_change(stored.id, "recall", "ops", {}, NOW)
    assert Message.get_by_id(stored.id).title == "new"
    assert event_types(stored.id) == ["accepted", "edited", "recalled"]


# --- import, accounts, retention, reads -------------------------------------------------------


def test_an_imported_message_is_final_with_an_imported_event(runtime, user):
    message_id = store.import_message(
        user.id, "t", "b", "text", None, "delivered", "k1", NOW - 10, {"from": "x"}
    )
    message = Message.get_by_id(message_id)
    assert (message.status, message.finished_at, message.priority) == ("delivered", NOW - 10, 3)
    assert event_types(message_id) == ["imported"]


def test_moving_messages_drops_only_the_idempotency_keys_the_target_has(runtime, user):
    bob = User.create(username="bob", password_hash="x", created_at=NOW, updated_at=NOW)
    a = channel(runtime, user, "a")
    mine = accept(runtime, user, [a], idempotency_key="same").id
    other = accept(runtime, user, [a], idempotency_key="only-mine").id
    accept(runtime, bob, [channel(runtime, bob, "b")], idempotency_key="same")
    assert store.move_messages(user.id, bob.id) == 2
    assert Message.get_by_id(mine).idempotency_key is None
    assert Message.get_by_id(other).idempotency_key == "only-mine"
    assert {m.user_id for m in Message.select()} == {bob.id}


def test_purge_removes_messages_with_their_deliveries_and_events(runtime, user):
    a = channel(runtime, user, "a")
    gone, kept = accept(runtime, user, [a]).id, accept(runtime, user, [a]).id
    store.purge_messages([gone])
    assert [m.id for m in Message.select()] == [kept]
    assert {d.message_id for d in Delivery.select()} == {kept}
    assert {e.message_id for e in MessageEvent.select()} == {kept}
    store.purge_events([e.id for e in MessageEvent.select()])
    assert MessageEvent.select().count() == 0 and Message.select().count() == 1


def test_events_after_a_cursor_are_scoped_to_their_owner(runtime, user):
    bob = User.create(username="bob", password_hash="x", created_at=NOW, updated_at=NOW)
    mine = accept(runtime, user, [channel(runtime, user, "a")]).id
    theirs = accept(runtime, bob, [channel(runtime, bob, "b")]).id
    assert [e.message_id for e in store.events_after(0, user.id, 10)] == [mine]
    everyone = store.events_after(0, None, 10)
    assert [e.message_id for e in everyone] == [mine, theirs]
    assert everyone[0].message_status == "queued" and everyone[0].detail["stage"] == "send"
    assert store.last_event_id() == everyone[-1].id
    assert store.events_after(everyone[0].id, None, 10) == everyone[1:]
    assert [kind for _, kind, _ in store.timeline(mine)] == ["accepted"]


def test_retryable_leaves_out_sent_pending_and_replaced_deliveries():
    view = lifecycle.DeliveryView
    rows = [
        view(1, "sent"),
        view(2, "dead"),
        view(3, "failed"),
        view(4, "sent", 3),
        view(5, "pending"),
    ]
    assert lifecycle.retryable(rows) == [2]
    assert lifecycle.retryable([view(7, "failed"), view(6, "dead")]) == [6, 7]


# --- the hand-off from ingest to the channel pool ----------------------------------------------


def handed(runtime, user, *channels) -> tuple[store.SendHandoff, store.Stored]:
    handoff = store.SendHandoff()
    stored = accept(runtime, user, list(channels), title="handed")
    handoff.put(stored.sends)
    return handoff, stored


def test_the_hand_off_gives_back_what_accept_stored_while_it_is_untouched(runtime, user):
    handoff, stored = handed(runtime, user, channel(runtime, user, "a"))
    (row,) = stored.sends
    assert (row.title, row.channel_name, row.status) == ("handed", "a", "pending")
    assert handoff.take([row.delivery_id], NOW) == {row.delivery_id: row}
    assert handoff.take([row.delivery_id], NOW) == {}  # taken once


def test_the_hand_off_refuses_a_delivery_written_since(runtime, user):
    handoff, stored = handed(runtime, user, channel(runtime, user, "a"))
    (row,) = stored.sends
    store.record_change(stored.id, "edit", "ops", {}, NOW + 1, ("new", "text"))
    assert handoff.take([row.delivery_id], NOW + 1) == {}


def test_the_hand_off_refuses_a_delivery_whose_channel_changed_or_went(runtime, user):
    a, b = channel(runtime, user, "a"), channel(runtime, user, "b")
    handoff, stored = handed(runtime, user, a, b)
    first, second = stored.sends
    Channel.update(updated_at=NOW + 1).where(Channel.id == a.id).execute()
    b.delete_instance()
    assert handoff.take([first.delivery_id, second.delivery_id], NOW) == {}


def test_the_hand_off_refuses_a_row_whose_id_now_belongs_to_another_message(runtime, user):
    handoff, stored = handed(runtime, user, channel(runtime, user, "a"))
    (row,) = stored.sends
    store.purge_messages([stored.id])
    again = accept(runtime, user, [channel(runtime, user, "b")], title="other")
    assert Delivery.get(Delivery.message == again.id).id == row.delivery_id  # the id came back
    assert handoff.take([row.delivery_id], NOW) == {}


def test_a_later_send_at_is_not_handed_off(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a")], send_at=NOW + 60)
    assert stored.sends == ()


# --- the edges of each decision (each test names the mutant it is there to kill) --------------


def test_a_hand_off_row_is_fresh_up_to_handoff_seconds_and_stale_after(runtime, user):
    handoff, stored = handed(runtime, user, channel(runtime, user, "a"))
    (row,) = stored.sends
    edge = NOW + store.HANDOFF_SECONDS
    assert handoff.take([row.delivery_id], edge) == {row.delivery_id: row}
    handoff.put([row])
    assert handoff.take([row.delivery_id], edge + 1) == {}  # its entry was claimed elsewhere


def test_the_hand_off_refuses_a_row_that_differs_from_the_stored_one_in_any_direction(
    runtime, user
):
    handoff, stored = handed(runtime, user, channel(runtime, user, "a"))
    (row,) = stored.sends
    for changed in (
        dataclasses.replace(row, message_id=row.message_id + 1),
        dataclasses.replace(row, message_id=row.message_id - 1),
        dataclasses.replace(row, created_at=row.created_at + 1),
    ):
        handoff.put([changed])
        assert handoff.take([row.delivery_id], NOW) == {}, changed


def test_a_late_outcome_leaves_a_final_message_final_and_an_untouched_one_alone(runtime, user):
    """A cancel that raced a send: the send's outcome is recorded, the message stays cancelled."""
    late = accept(runtime, user, [channel(runtime, user, "a")])
    untouched = accept(runtime, user, [channel(runtime, user, "b")])
    open_one = accept(runtime, user, [channel(runtime, user, "c")])
    for stored in (late, untouched):
        assert store.cancel(runtime.mailbox, stored.id, "ops", NOW + 1)
    late_delivery = Delivery.get(Delivery.message == late.id).id
    open_delivery = Delivery.get(Delivery.message == open_one.id).id

    def record(batch):
        batch.record(late_delivery, "sent", 1, "delivery_sent", {})
        batch.record(open_delivery, "sent", 1, "delivery_sent", {})

    outcome_batch(runtime, [late.id, untouched.id, open_one.id], record)
    assert Message.get_by_id(late.id).status == "cancelled"
    assert event_types(late.id).count("cancelled") == 1
    assert "delivered" not in event_types(late.id)
    assert Message.get_by_id(untouched.id).status == "cancelled"
    assert Message.get_by_id(open_one.id).status == "delivered"


def test_a_fallback_and_a_callback_in_one_batch_both_wake_the_channel_pool(runtime, user):
    backup = channel(runtime, user, "backup")
    falling = accept(runtime, user, [channel(runtime, user, "main", fallback=backup)])
    finishing = accept(
        runtime, user, [channel(runtime, user, "other")], callback_url="http://127.0.0.1:9/cb"
    )
    failed = Delivery.get(Delivery.message == falling.id).id
    sent = Delivery.get(Delivery.message == finishing.id).id

    def record(batch):
        batch.record(failed, "failed", 1, "delivery_failed", {})
        batch.record(sent, "sent", 1, "delivery_sent", {})

    assert outcome_batch(runtime, [falling.id, finishing.id], record) == {"channel_pool"}


def test_only_a_sent_outcome_keeps_a_sent_time_and_a_remote_id(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a"), channel(runtime, user, "b")])
    ok, bad = [d.id for d in Delivery.select().where(Delivery.message == stored.id)]

    def record(batch):
        batch.record(ok, "sent", 1, "delivery_sent", {}, 200, None, None, "r1")
        batch.record(bad, "failed", 1, "delivery_failed", {}, 400, None, "400", "r2")

    outcome_batch(runtime, [stored.id], record)
    sent, failed = Delivery.get_by_id(ok), Delivery.get_by_id(bad)
    assert (sent.sent_at, sent.remote_id) == (NOW + 2, "r1")
    assert (failed.sent_at, failed.remote_id) == (None, None)


def fail_next(runtime, stored) -> None:
    """Record the newest pending delivery of the message as failed."""
    newest = (
        Delivery.select()
        .where((Delivery.message == stored.id) & (Delivery.status == "pending"))
        .order_by(Delivery.id.desc())
        .first()
    )
    outcome_batch(
        runtime, [stored.id], lambda b: b.record(newest.id, "failed", 1, "delivery_failed", {})
    )


def test_a_chain_of_fallbacks_stops_after_max_fallback_depth_hops(runtime, user):
    names = [f"c{i}" for i in range(store.MAX_FALLBACK_DEPTH + 2)]
    chain: list[Channel] = []
    for name in reversed(names):  # each channel falls back to the next one
        chain.insert(0, channel(runtime, user, name, fallback=chain[0] if chain else None))
    stored = accept(runtime, user, [chain[0]])
    for _ in range(store.MAX_FALLBACK_DEPTH + 1):
        fail_next(runtime, stored)
    deliveries = list(Delivery.select().where(Delivery.message == stored.id).order_by(Delivery.id))
    assert [d.channel_name for d in deliveries] == names[: store.MAX_FALLBACK_DEPTH + 1]
    assert all(d.status == "failed" for d in deliveries)
    assert Message.get_by_id(stored.id).status == "failed"


def test_a_fallback_delivery_starts_pending_with_no_attempts(runtime, user):
    backup = channel(runtime, user, "backup")
    stored = accept(runtime, user, [channel(runtime, user, "main", fallback=backup)])
    fail_next(runtime, stored)
    new = Delivery.get((Delivery.message == stored.id) & (Delivery.channel_name == "backup"))
    assert (new.status, new.attempts) == ("pending", 0)


def test_no_fallback_from_a_deleted_channel_or_to_a_disabled_one(runtime, user):
    gone = channel(runtime, user, "gone")
    from_gone = accept(runtime, user, [gone])
    gone.delete_instance()  # the delivery keeps its name; its channel id is cleared
    fail_next(runtime, from_gone)
    assert Message.get_by_id(from_gone.id).status == "failed"

    disabled = channel(runtime, user, "disabled", enabled=False)
    to_disabled = accept(runtime, user, [channel(runtime, user, "main", fallback=disabled)])
    fail_next(runtime, to_disabled)
    assert statuses(to_disabled.id) == ["failed"]
    assert Message.get_by_id(to_disabled.id).status == "failed"


def test_a_tasks_cancel_ends_the_delivery_once_and_a_missing_id_changes_nothing(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a")], callback_url="http://x.test/cb")
    delivery = Delivery.get(Delivery.message == stored.id).id
    with runtime.db.atomic():
        assert store.cancel_delivery(runtime.mailbox, None, stored.id, "ops", NOW) == set()
        assert store.cancel_delivery(runtime.mailbox, delivery, None, "ops", NOW) == set()
    assert statuses(stored.id) == ["pending"]
    with runtime.db.atomic():
        wake = store.cancel_delivery(runtime.mailbox, delivery, stored.id, "ops", NOW + 1)
    assert wake == {"channel_pool"}  # the callback the final status owes
    assert statuses(stored.id) == ["cancelled"]
    assert Message.get_by_id(stored.id).status == "cancelled"
    with runtime.db.atomic():
        assert store.cancel_delivery(runtime.mailbox, delivery, stored.id, "ops", NOW + 2) == set()
    assert event_types(stored.id).count("delivery_cancelled") == 1


def test_a_tasks_retry_reopens_failed_deliveries_and_requeues_their_message(runtime, user):
    stored = accept(runtime, user, [channel(runtime, user, "a")])
    delivery = Delivery.get(Delivery.message == stored.id).id
    fail_next(runtime, stored)
    assert Message.get_by_id(stored.id).status == "failed"
    with runtime.db.atomic():
        store.reopen_deliveries({}, "ops", NOW + 3)  # nothing: nothing written
        store.reopen_deliveries({delivery: stored.id}, "ops", NOW + 3)
    reopened = Delivery.get_by_id(delivery)
    assert (reopened.status, reopened.attempts) == ("pending", 0)
    assert Message.get_by_id(stored.id).status == "queued"
    (event,) = [
        e
        for e in MessageEvent.select().where(MessageEvent.message == stored.id)
        if e.type == "retry"
    ]
    assert event.detail == {"deliveries": [delivery], "by": "ops", "via": "task"}


def test_the_callback_a_cancel_owes_carries_the_messages_priority_and_owner(runtime, user):
    stored = accept(
        runtime, user, [channel(runtime, user, "a")], priority=5, callback_url="http://x.test/cb"
    )
    assert user.id != 5
    assert store.cancel(runtime.mailbox, stored.id, "ops", NOW + 1)
    (callback,) = [e for e in entries("channel_pool") if e.kind == "callback"]
    assert (callback.priority, callback.user_id) == (5, user.id)
    assert callback.payload == {"message_id": stored.id, "url": "http://x.test/cb"}
