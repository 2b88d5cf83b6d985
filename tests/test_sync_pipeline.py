"""The pipeline driven synchronously: ingest → channel pool → outcome, with a fake clock.

No actor threads, no worker threads, no sleeps: ingest's group commit and the pool's
`run_once` run in the test's thread against a real SQLite file, and sends go over HTTP
to a real sink on 127.0.0.1. Retries and `send_at` fall due when the clock is moved.
"""

from __future__ import annotations

import pytest
from support.model_rows import event_types, webhook_channel

from messagepusher.accounts.users import open_accounts
from messagepusher.actors.channel_pool import ChannelPoolActor
from messagepusher.actors.ingest import (
    Accepted,
    Draft,
    IngestActor,
    IngestClient,
    IngestError,
    _Pending,
)
from messagepusher.supervisor.actor import FLUSH
from messagepusher.supervisor.clock import FakeClock
from messagepusher.supervisor.config import load_settings
from messagepusher.supervisor.mailbox import Mailbox
from messagepusher.supervisor.models import (
    Channel,
    Delivery,
    MailboxEntry,
    Message,
    User,
)
from messagepusher.supervisor.retry import RetryPolicy
from messagepusher.supervisor.runtime import Runtime
from messagepusher.supervisor.ticker import ActorTimers, Ticker

START = 1_700_000_000.0


class Pipeline:
    """The ingest actor and the channel pool, built but never started (no threads)."""

    def __init__(self, tmp_path):
        self.clock = FakeClock(START)
        settings = load_settings(
            environ={
                "MP_DATA_DIR": str(tmp_path),
                "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
                "MP_RETRY__BASE_DELAY_SECONDS": "30",
            }
        )
        self.runtime = Runtime(settings, clock=self.clock)
        self.runtime.open_storage()
        open_accounts(self.runtime)
        # The mailbox reads the same fake clock, so leases, retries and send_at move with it.
        self.runtime.mailbox = Mailbox(
            self.runtime.db, RetryPolicy.from_settings(settings.retry), now=self.clock.now
        )
        self.user = User.create(
            username="sync", password_hash="x", created_at=START, updated_at=START
        )
        self.runtime.ingest = IngestClient(self.runtime)
        self.ingest = IngestActor(self.runtime)
        self.ingest.setup()
        self.pool = ChannelPoolActor(self.runtime)
        self.pool.setup()

    def run_handed_over(self) -> None:
        """As the pool's workers would, in this thread: start what ingest handed over, send
        each, and leave the outcomes finished but not written (`on_flush` writes them)."""
        for job in self.pool.handed_over():
            self.pool.in_flight[job.entry.id] = (job, None)
            self.pool._run(job)

    def busy_pool(self) -> None:
        """As if every pool worker were sending: fresh sends wait in the queue for a claim."""
        self.pool.leased.set_room(self.pool.owner, 0)

    def channel(self, name: str, url: str) -> Channel:
        return webhook_channel(self.runtime, self.user, name, url, self.clock.now())

    def send(self, **draft) -> Accepted | IngestError:
        """One draft through ingest's real flush (group commit), in this thread."""
        pending = _Pending(Draft(user_id=self.user.id, **draft))
        self.runtime.ingest.queue.append(pending)
        self.ingest.on_flush()
        return pending.future.get(timeout=0)

    def close(self) -> None:
        self.pool.teardown(crashed=False)
        self.runtime.db.close()


@pytest.fixture
def pipeline(tmp_path):
    p = Pipeline(tmp_path)
    yield p
    p.close()


def test_a_message_goes_from_ingest_through_the_pool_to_the_sink_in_one_thread(pipeline, sink):
    pipeline.channel("hook", sink.url + "/in")
    accepted = pipeline.send(title="hello", body="world", channels=["hook"])
    assert isinstance(accepted, Accepted) and accepted.status == "queued"
    # The pool has idle workers: ingest leased the send to it in its own commit, so there
    # is nothing to wake and nothing for a claim to take.
    assert accepted.wake == ()
    entry = MailboxEntry.get(MailboxEntry.recipient == "channel_pool")
    assert (entry.state, entry.lease_owner, entry.attempts) == ("leased", pipeline.pool.owner, 1)
    assert Message.get_by_id(accepted.id).status == "sending"

    assert pipeline.pool.run_once() == 1
    assert [r["body"]["title"] for r in sink.requests] == ["hello"]
    message = Message.get_by_id(accepted.id)
    assert (message.status, message.finished_at) == ("delivered", START)
    (delivery,) = Delivery.select().where(Delivery.message == accepted.id)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("sent", 1, 200)
    assert event_types(accepted.id) == ["accepted", "delivery_sent", "delivered"]
    assert pipeline.pool.run_once() == 0  # nothing left: the entry was acked


def test_a_retry_waits_for_the_clock_and_then_delivers(pipeline, sink):
    pipeline.channel("hook", sink.url + "/in")
    sink.script = [503]
    accepted = pipeline.send(title="again", channels=["hook"])

    assert pipeline.pool.run_once() == 1
    (delivery,) = Delivery.select().where(Delivery.message == accepted.id)
    assert delivery.status == "pending" and "503" in delivery.last_error
    entry = MailboxEntry.get(MailboxEntry.recipient == "channel_pool")
    assert entry.state == "failed" and entry.available_at > START
    assert pipeline.pool.run_once() == 0  # not due yet: the clock has not moved

    pipeline.clock.advance(entry.available_at - START)
    assert pipeline.pool.run_once() == 1
    assert [r["status"] for r in sink.requests] == [503, 200]
    assert Message.get_by_id(accepted.id).status == "delivered"
    assert event_types(accepted.id) == ["accepted", "delivery_retry", "delivery_sent", "delivered"]


def test_a_later_send_at_is_sent_only_once_the_clock_reaches_it(pipeline, sink):
    pipeline.channel("hook", sink.url + "/in")
    accepted = pipeline.send(title="later", channels=["hook"], send_at=START + 600)
    assert (accepted.status, accepted.wake) == ("scheduled", ())

    assert pipeline.pool.run_once() == 0
    pipeline.clock.advance(599)
    assert pipeline.pool.run_once() == 0 and sink.requests == []
    pipeline.clock.advance(1)
    assert pipeline.pool.run_once() == 1
    assert Message.get_by_id(accepted.id).status == "delivered"


def test_a_permanent_failure_hands_over_to_the_fallback_channel(pipeline, sink):
    backup = pipeline.channel("backup", sink.url + "/backup")
    main = pipeline.channel("main", sink.url + "/main")
    main.fallback = backup
    main.save()
    sink.script = [400]
    accepted = pipeline.send(title="fall", channels=["main"])

    assert pipeline.pool.run_once() == 1
    assert Message.get_by_id(accepted.id).status == "sending"
    assert pipeline.pool.run_once() == 1
    assert [r["path"] for r in sink.requests] == ["/main", "/backup"]
    assert Message.get_by_id(accepted.id).status == "delivered"
    assert event_types(accepted.id) == [
        "accepted",
        "delivery_failed",
        "fallback",
        "delivery_sent",
        "delivered",
    ]


def test_a_channel_added_after_a_batch_is_found_by_the_next_one(pipeline, sink):
    pipeline.channel("first", sink.url + "/first")
    assert isinstance(pipeline.send(title="one", channels=["first"]), Accepted)
    refused = pipeline.send(title="two", channels=["second"])
    assert isinstance(refused, IngestError) and refused.code == "unknown_channel"

    pipeline.clock.advance(1)
    pipeline.channel("second", sink.url + "/second")
    assert isinstance(pipeline.send(title="three", channels=["second"]), Accepted)


def test_a_channel_disabled_after_a_batch_is_refused_by_the_next_one(pipeline, sink):
    hook = pipeline.channel("hook", sink.url + "/in")
    assert isinstance(pipeline.send(title="one", channels=["hook"]), Accepted)
    pipeline.clock.advance(1)
    Channel.update(enabled=False, updated_at=pipeline.clock.now()).where(
        Channel.id == hook.id
    ).execute()
    refused = pipeline.send(title="two", channels=["hook"])
    assert isinstance(refused, IngestError) and refused.code == "channel_disabled"


def test_a_cancel_between_accept_and_claim_means_nothing_is_sent(pipeline, sink):
    from messagepusher.messages import store

    pipeline.channel("hook", sink.url + "/in")
    pipeline.busy_pool()
    accepted = pipeline.send(title="stop", channels=["hook"])
    assert store.cancel(pipeline.runtime.mailbox, accepted.id, "test", pipeline.clock.now())
    assert pipeline.pool.run_once() == 0
    assert sink.requests == []
    assert Message.get_by_id(accepted.id).status == "cancelled"
    assert MailboxEntry.get(MailboxEntry.recipient == "channel_pool").state == "done"


def test_an_edit_between_accept_and_send_sends_the_new_text(pipeline, sink):
    from messagepusher.messages import store

    pipeline.channel("hook", sink.url + "/in")
    pipeline.busy_pool()
    accepted = pipeline.send(title="old title", channels=["hook"])
    pipeline.clock.advance(1)
    store.record_change(accepted.id, "edit", "test", {}, pipeline.clock.now(), ("new title", ""))
    assert pipeline.pool.run_once() == 1
    assert [r["body"]["title"] for r in sink.requests] == ["new title"]


def test_a_channel_changed_between_accept_and_send_sends_with_its_new_config(pipeline, sink):
    hook = pipeline.channel("hook", sink.url + "/old")
    pipeline.busy_pool()
    accepted = pipeline.send(title="moved", channels=["hook"])
    pipeline.clock.advance(1)
    Channel.update(
        config=pipeline.runtime.secretbox.encrypt({"url": sink.url + "/new"}),
        updated_at=pipeline.clock.now(),
    ).where(Channel.id == hook.id).execute()
    assert pipeline.pool.run_once() == 1
    assert [r["path"] for r in sink.requests] == ["/new"]
    assert Message.get_by_id(accepted.id).status == "delivered"


def test_a_busy_pool_leaves_a_fresh_send_queued_for_its_claim(pipeline, sink):
    pipeline.channel("hook", sink.url + "/in")
    pipeline.busy_pool()
    accepted = pipeline.send(title="later", channels=["hook"])
    assert accepted.wake == ("channel_pool",)
    entry = MailboxEntry.get(MailboxEntry.recipient == "channel_pool")
    assert (entry.state, entry.lease_owner, entry.attempts) == ("ready", None, 0)
    assert Message.get_by_id(accepted.id).status == "queued"
    assert pipeline.pool.run_once() == 1
    assert Message.get_by_id(accepted.id).status == "delivered"


def test_a_send_to_a_paused_channel_is_queued_not_leased(pipeline, sink):
    hook = pipeline.channel("hook", sink.url + "/in")
    pipeline.runtime.mailbox.pause("test", channel_id=hook.id)
    accepted = pipeline.send(title="held", channels=["hook"])
    assert accepted.wake == ("channel_pool",)
    assert pipeline.pool.run_once() == 0
    assert sink.requests == []
    assert MailboxEntry.get(MailboxEntry.recipient == "channel_pool").state == "ready"


def test_a_send_leased_to_a_pool_that_then_crashed_is_claimed_by_the_next_incarnation(
    pipeline, sink
):
    pipeline.channel("hook", sink.url + "/in")
    accepted = pipeline.send(title="orphan", channels=["hook"])
    first_owner = pipeline.pool.owner
    pipeline.pool.teardown(crashed=True)  # it never took the send
    assert MailboxEntry.get(MailboxEntry.recipient == "channel_pool").lease_owner == first_owner

    successor = ChannelPoolActor(pipeline.runtime, incarnation=2)
    pipeline.runtime.mailbox.recover(successor.name, successor.owner)  # as its on_start does
    successor.setup()
    pipeline.pool = successor
    assert successor.run_once() == 1
    assert [r["body"]["title"] for r in sink.requests] == ["orphan"]
    assert Message.get_by_id(accepted.id).status == "delivered"


def test_a_send_leased_by_ingest_after_the_pool_stopped_is_claimed_by_the_next_incarnation(
    pipeline, sink
):
    pipeline.channel("hook", sink.url + "/in")
    reserved = pipeline.runtime.ingest.leased.reserve(["webhook"])
    assert reserved == pipeline.pool.owner
    pipeline.pool.teardown(crashed=True)
    successor = ChannelPoolActor(pipeline.runtime, incarnation=2)
    successor.setup()
    pipeline.pool = successor
    # Ingest's commit leases to the owner it saw; the send waits, stale, for the successor.
    leased = pipeline.runtime.ingest.leased
    leased.set_room(successor.owner, 0)
    leased.open(reserved, 1, lambda _type: True, lambda: None)
    accepted = pipeline.send(title="late", channels=["hook"])
    leased.open(successor.owner, 1, successor._leasable, successor.notify_handover)
    assert MailboxEntry.get(MailboxEntry.recipient == "channel_pool").lease_owner == reserved
    assert successor.run_once() == 1
    assert [r["body"]["title"] for r in sink.requests] == ["late"]
    assert Message.get_by_id(accepted.id).status == "delivered"


def test_an_orderly_stop_gives_back_a_leased_send_it_had_not_started(pipeline, sink):
    pipeline.channel("hook", sink.url + "/in")
    pipeline.send(title="unstarted", channels=["hook"])
    pipeline.pool.teardown(crashed=False)
    entry = MailboxEntry.get(MailboxEntry.recipient == "channel_pool")
    assert (entry.state, entry.lease_owner, entry.attempts) == ("ready", None, 0)
    assert pipeline.runtime.ingest.leased.reserve(["webhook"]) is None  # nothing to lease to


def test_a_rate_limited_channel_type_or_too_little_room_leaves_the_send_to_the_claim(
    pipeline, sink
):
    pipeline.channel("hook", sink.url + "/in")
    pipeline.channel("other", sink.url + "/other")
    Channel.create(
        user=pipeline.user,
        name="slack",
        type="slack",  # 60 a minute per webhook: the claim paces it
        config=pipeline.runtime.secretbox.encrypt({"url": sink.url + "/slack"}),
        created_at=START,
        updated_at=START,
    )
    assert pipeline.send(title="paced", channels=["slack"]).wake == ("channel_pool",)
    pipeline.pool.leased.set_room(pipeline.pool.owner, 1)
    assert pipeline.send(title="two channels", channels=["hook", "other"]).wake == ("channel_pool",)
    assert pipeline.send(title="one channel", channels=["hook"]).wake == ()
    assert pipeline.send(title="no room left", channels=["hook"]).wake == ("channel_pool",)
    states = [e.state for e in MailboxEntry.select().order_by(MailboxEntry.id)]
    assert states == ["ready", "ready", "ready", "leased", "ready"]


class Told:
    """Stands in for the pool's actor reference on its timers: keeps what they tell."""

    def __init__(self) -> None:
        self.messages: list = []

    def tell(self, message) -> None:
        self.messages.append(message)


def test_outcomes_of_a_light_load_share_one_write_back_once_the_delay_passed(pipeline, sink):
    pipeline.channel("hook", sink.url + "/in")
    pool = pipeline.pool
    ticker, told = Ticker(pipeline.clock, threaded=False), Told()
    pool.timers = ActorTimers(ticker, told)
    batches: list[int] = []
    write_back = pool.write_back
    pool.write_back = lambda jobs: (batches.append(len(jobs)), write_back(jobs))[1]
    ids = [pipeline.send(title=f"light {n}", channels=["hook"]).id for n in range(2)]

    pipeline.run_handed_over()
    pool.on_flush()
    pool.on_flush()  # a second FLUSH (the second worker's) neither writes nor sets a new timer
    # Both were sent at once; their rows wait for company, behind one timer.
    assert [r["body"]["title"] for r in sink.requests] == ["light 0", "light 1"]
    assert batches == [] and [Message.get_by_id(i).status for i in ids] == ["sending"] * 2
    pipeline.clock.advance(0.099)
    assert ticker.run_due() == 0
    pipeline.clock.advance(0.001)  # channel_pool.write_back_delay_ms: 100
    assert ticker.run_due() == 1 and told.messages == [FLUSH]
    pool.on_flush()
    assert batches == [2]
    assert [Message.get_by_id(i).status for i in ids] == ["delivered"] * 2

    # Once written, the next outcome waits behind a timer of its own.
    third = pipeline.send(title="light 2", channels=["hook"]).id
    pipeline.run_handed_over()
    pool.on_flush()
    pipeline.clock.advance(0.1)
    assert ticker.run_due() == 1
    pool.on_flush()
    assert batches == [2, 1] and Message.get_by_id(third).status == "delivered"


def test_outcomes_are_written_at_once_when_no_worker_is_free_or_no_delay_is_set(pipeline, sink):
    pipeline.channel("hook", sink.url + "/in")
    pool = pipeline.pool
    ticker = Ticker(pipeline.clock, threaded=False)
    pool.timers = ActorTimers(ticker, Told())
    pool.workers = 2  # two finished sends fill both places
    ids = [pipeline.send(title=f"full {n}", channels=["hook"]).id for n in range(2)]
    pipeline.run_handed_over()
    pool.on_flush()
    assert [Message.get_by_id(i).status for i in ids] == ["delivered"] * 2

    pool.workers = 16
    pipeline.runtime.settings.channel_pool.write_back_delay_ms = 0
    now = pipeline.send(title="no delay", channels=["hook"]).id
    pipeline.run_handed_over()
    pool.on_flush()
    assert Message.get_by_id(now).status == "delivered"
    pipeline.clock.advance(1)
    assert ticker.run_due() == 0  # and no timer was left behind


def test_while_outcomes_wait_for_the_timer_workers_tell_nothing_but_handovers_do(pipeline, sink):
    pipeline.channel("hook", sink.url + "/in")
    pool = pipeline.pool
    ticker, timer_told, actor_told = Ticker(pipeline.clock, threaded=False), Told(), Told()
    pool.timers = ActorTimers(ticker, timer_told)
    pool._actor_ref = actor_told  # what ingest's handover and the workers tell the actor

    first = pipeline.send(title="first", channels=["hook"]).id
    assert actor_told.messages == [FLUSH]  # the handover
    pipeline.run_handed_over()
    assert actor_told.messages == [FLUSH] * 2  # the finished send: nothing waits yet
    pool.on_flush()  # arms the write-back timer

    second = pipeline.send(title="second", channels=["hook"]).id
    assert actor_told.messages == [FLUSH] * 3  # a handover is told although an outcome waits
    pipeline.run_handed_over()
    assert actor_told.messages == [FLUSH] * 3  # the worker's outcome waits for the timer
    pipeline.clock.advance(0.1)
    assert ticker.run_due() == 1 and timer_told.messages == [FLUSH]
    pool.on_flush()
    assert [Message.get_by_id(i).status for i in (first, second)] == ["delivered"] * 2

    third = pipeline.send(title="third", channels=["hook"]).id
    pipeline.run_handed_over()  # nothing waits any more: the worker tells again
    assert actor_told.messages == [FLUSH] * 5
    pool.on_flush()
    pipeline.clock.advance(0.1)
    assert ticker.run_due() == 1
    pool.on_flush()
    assert Message.get_by_id(third).status == "delivered"


def test_a_wake_that_finds_every_place_taken_by_finished_sends_has_them_written_at_once(
    pipeline, sink
):
    pipeline.channel("hook", sink.url + "/in")
    pool = pipeline.pool
    ticker, told = Ticker(pipeline.clock, threaded=False), Told()
    pool.timers, pool._actor_ref = ActorTimers(ticker, told), told
    pool.workers = 3
    for n in range(2):
        pipeline.send(title=f"light {n}", channels=["hook"])
    pipeline.run_handed_over()
    pool.on_flush()  # two outcomes wait for the timer, one place is free
    pipeline.send(title="fills the pool", channels=["hook"])
    pipeline.run_handed_over()
    told.messages.clear()
    pool.on_wake()  # more work is due and no place is free
    assert pool.more_waiting and told.messages == [FLUSH]
    pool.on_flush()
    assert not pool.done and Message.select().where(Message.status == "delivered").count() == 3
