"""The tasks API through the real server: listing, retry, cancel, bulk re-drive of dead letters, and
pauses of a mailbox or a channel that hold across a restart and across two processes on one file.

A pause promises that nothing happens, so where no later work can show it held, it is watched for
HOLD_SECONDS (many dispatcher scans of 0.2 s) and then lifted, and the work must then go through.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.databases import database_on
from support.ops import CONFIRM, db_file, rows, until, webhook

from messagepusher.operations.task_control import entry_refusal, retry_refusal
from messagepusher.supervisor.clock import FakeClock
from messagepusher.supervisor.mailbox import (
    PARKED_AT,
    REDRIVABLE,
    Mailbox,
    owner_for,
    payload_number,
)
from messagepusher.supervisor.models import Channel, Delivery, MailboxEntry, Message, User

pytestmark = pytest.mark.xdist_group("heavy")  # 500 messages, restarts, two processes

ENV = {
    "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
    # a small retry budget: a send that keeps failing is dead after two quick attempts
    "MP_RETRY__MAX_ATTEMPTS": "2",
    "MP_RETRY__BASE_DELAY_SECONDS": "0.1",
    "MP_RETRY__MAX_DELAY_SECONDS": "0.2",
}
CONTRACT = {
    "id",
    "mailbox",
    "kind",
    "state",
    "attempts",
    "max_attempts",
    "available_at",
    "lease_owner",
    "lease_expires_at",
    "last_error",
    "message_id",
    "delivery_id",
    "created_at",
}
HOLD_SECONDS = 3.0


def user(server, name: str):
    server.create_user(name)
    return server.client(server.create_key(name))


def send(api, title: str, channel: str) -> int:
    sent = api.post("/api/v1/messages", json={"title": title, "channels": [channel]})
    assert sent.status_code == 202, sent.text
    return sent.json()["id"]


def tasks_of(api, message_id: int) -> list[dict]:
    listed = api.get(f"/api/v1/tasks?message_id={message_id}")
    assert listed.status_code == 200, listed.text
    return listed.json()["items"]


def the_send(api, message_id: int) -> dict:
    [task] = [t for t in tasks_of(api, message_id) if t["kind"] == "send"]
    return task


def delivered_ids(sink) -> set[int]:
    return {r["body"]["id"] for r in sink.received(200)}


def held(api, sink, message_ids: list[int], seconds: float = HOLD_SECONDS) -> None:
    """Watch paused sends for `seconds`: each stays ready, unclaimed, and nothing reaches the sink."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message_id in message_ids:
            task = the_send(api, message_id)
            assert (task["state"], task["attempts"], task["paused"]) == ("ready", 0, True), task
        assert not {r["body"]["id"] for r in sink.received(None)} & set(message_ids)
        time.sleep(0.1)


def paused_mailboxes(api) -> list[str]:
    status = api.get("/api/v1/admin/status")
    assert status.status_code == 200, status.text
    return [m["name"] for m in status.json()["paused"]["mailboxes"]]


def audited(admin, action: str, who: str, outcomes: set[str] = frozenset({"ok"})) -> list[dict]:
    """The audit rows of `action` by `who`, once rows with each of `outcomes` are written (the
    audit writer commits in batches)."""

    def found():
        items = admin.get("/api/v1/admin/audit", params={"action": action}).json()["items"]
        mine = [i for i in items if i["username"] == who]
        return mine if outcomes <= {i["outcome"] for i in mine} else None

    return until(found, 30, f"audit rows of {action} by {who} with outcomes {outcomes}")


# --- the mailbox's side, driven synchronously on SQLite and PostgreSQL --------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """This file's database tests run on SQLite and on PostgreSQL."""
    yield from database_on(request, tmp_path)


def _deliveries(count: int, channel_names: tuple[str, ...]) -> dict[str, list[int]]:
    """`count` pending deliveries through each named channel (one user, one message each)."""
    now = 1_700_000_000.0
    user = User.create(username="u", password_hash="x", created_at=now, updated_at=now)
    out: dict[str, list[int]] = {}
    for name in channel_names:
        channel = Channel.create(
            user=user, name=name, type="webhook", config="", created_at=now, updated_at=now
        )
        for _ in range(count):
            message = Message.create(
                user=user, status="queued", accepted_status="queued", created_at=now, updated_at=now
            )
            delivery = Delivery.create(
                message=message,
                channel=channel,
                channel_name=name,
                channel_type="webhook",
                created_at=now,
                updated_at=now,
            )
            out.setdefault(name, []).append(delivery.id)
    return out


def test_a_paused_mailbox_is_never_claimed_nor_woken_until_resumed(db):
    clock = FakeClock()
    mailbox = Mailbox(db, now=clock.now)
    mailbox.put("fetcher", "fetch", {"message_id": 1})
    mailbox.pause("admin", mailbox="fetcher")
    mailbox.pause("someone else", mailbox="fetcher")  # a second pause changes nothing
    assert mailbox.pauses() == ({"fetcher"}, set())
    assert mailbox.claim("fetcher", 10, 30, owner_for("fetcher")) == []
    assert "fetcher" not in mailbox.next_due()
    assert mailbox.resume(mailbox="fetcher") is True
    assert mailbox.resume(mailbox="fetcher") is False
    assert [e.kind for e in mailbox.claim("fetcher", 10, 30, owner_for("fetcher"))] == ["fetch"]


def test_a_paused_channel_s_sends_are_passed_over_and_stay_ready_behind_a_full_head(db):
    clock = FakeClock()
    mailbox = Mailbox(db, now=clock.now)
    ids = _deliveries(5, ("paused", "open"))
    for delivery_id in ids["paused"] + ids["open"]:  # the paused ones first: the head of the queue
        mailbox.put("channel_pool", "send", {"delivery_id": delivery_id, "message_id": 1})
    paused_channel = Delivery.get_by_id(ids["paused"][0]).channel_id
    mailbox.pause("admin", channel_id=paused_channel)
    taken = mailbox.claim("channel_pool", 2, 30, owner_for("channel_pool"))
    assert [e.payload["delivery_id"] for e in taken] == ids["open"][:2]
    waiting = MailboxEntry.select().where(MailboxEntry.state == "ready")
    parked = [e for e in waiting if e.available_at >= PARKED_AT]
    assert len(parked) == 5 and all(e.attempts == 0 for e in parked)
    mailbox.resume(channel_id=paused_channel)
    clock.advance(1)
    again = mailbox.claim("channel_pool", 10, 30, owner_for("channel_pool"))
    assert {e.payload["delivery_id"] for e in again} == set(ids["paused"] + ids["open"][2:])


def test_redrive_resets_the_budget_and_cancel_ends_only_unleased_entries(db):
    clock = FakeClock()
    mailbox = Mailbox(db, now=clock.now)
    owner = owner_for("channel_pool")
    first = mailbox.put("channel_pool", "send", {}, max_attempts=1)
    [entry] = mailbox.claim("channel_pool", 1, 30, owner)
    assert mailbox.nack(entry, owner, "HTTP 500") == "dead"
    assert mailbox.redrive([first]) == 1
    row = MailboxEntry.get_by_id(first)
    assert (row.state, row.attempts, row.available_at) == ("ready", 0, clock.now())
    [entry] = mailbox.claim("channel_pool", 1, 30, owner)
    assert mailbox.redrive([first]) == 0 and mailbox.cancel(first, "by hand") is False  # leased
    mailbox.ack(first, owner)
    assert mailbox.redrive([first]) == 0  # done
    second = mailbox.put("channel_pool", "send", {})
    assert mailbox.cancel(second, "cancelled by admin") is True
    assert MailboxEntry.get_by_id(second).state == "cancelled"
    assert mailbox.claim("channel_pool", 5, 30, owner) == []


def test_the_entries_of_one_message_are_found_by_the_message_id_in_their_payload(db):
    mailbox = Mailbox(db, now=FakeClock().now)
    mine = [
        mailbox.put("fetcher", "fetch", {"message_id": 12}),
        mailbox.put("channel_pool", "send", {"delivery_id": 3, "message_id": 12}),
    ]
    mailbox.put("channel_pool", "send", {"delivery_id": 4, "message_id": 120})
    mailbox.put("janitor", "backup", {"run_id": 12})
    found = MailboxEntry.select(MailboxEntry.id).where(payload_number(db, "message_id") == 12)
    assert sorted(e.id for e in found) == mine


def test_what_a_hand_retry_refuses_and_why():
    assert entry_refusal("dead", REDRIVABLE, "retried") is None
    assert "leased" in entry_refusal("leased", REDRIVABLE, "retried")
    assert "done" in entry_refusal("done", REDRIVABLE, "retried")
    sent = Delivery(id=4, status="sent", message=1)
    dead = Delivery(id=4, status="dead", message=1)
    failed_message = Message(id=1, status="failed")
    assert retry_refusal("send", failed_message, dead, {}) is None
    assert "sent" in retry_refusal("send", failed_message, sent, {})
    assert "cancelled" in retry_refusal("send", Message(id=1, status="cancelled"), dead, {})
    assert "no longer exists" in retry_refusal("send", None, None, {"message_id": 1})
    assert "went on" in retry_refusal("ai", Message(id=1, status="queued"), None, {})
    assert retry_refusal("fetch", Message(id=1, status="fetching"), None, {}) is None
    assert retry_refusal("fire", None, None, {}) is None  # a schedule's fire: nothing to check


# --- through the server ----------------------------------------------------------------------


def test_a_user_lists_retries_and_cancels_their_own_tasks_and_another_users_are_404(
    server_factory, sink
):
    server = server_factory(ENV)
    admin = server.client(server.create_key())
    alice, bob = user(server, "alice"), user(server, "bob")
    webhook(alice, sink.url + "/alice")
    sink.default_status = 500
    message_id = send(alice, "dead letter", "hook")
    alice.wait_message(message_id, ("failed",))

    task = the_send(alice, message_id)
    assert set(task) >= CONTRACT, CONTRACT - set(task)
    assert (task["mailbox"], task["state"], task["attempts"], task["max_attempts"]) == (
        "channel_pool",
        "dead",
        2,
        2,
    )
    assert task["message_id"] == message_id and task["delivery_id"] and task["lease_owner"] is None
    assert "500" in task["last_error"]
    assert alice.get(f"/api/v1/tasks/{task['id']}").json() == task
    assert alice.get("/api/v1/tasks?state=dead&mailbox=channel_pool").json()["items"] == [task]

    # another user: nothing listed, and the entry does not exist for them
    assert bob.get("/api/v1/tasks").json()["items"] == []
    assert bob.get(f"/api/v1/tasks?message_id={message_id}").json()["items"] == []
    for method, path in (
        ("GET", f"/api/v1/tasks/{task['id']}"),
        ("POST", f"/api/v1/tasks/{task['id']}/retry"),
        ("POST", f"/api/v1/tasks/{task['id']}/cancel"),
    ):
        answer = bob.request(method, path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", path
    assert the_send(alice, message_id)["state"] == "dead"
    # the admin sees everyone's, or one user's
    assert task["id"] in [t["id"] for t in admin.get("/api/v1/tasks?user=alice").json()["items"]]
    assert admin.get("/api/v1/tasks?user=bob").json()["items"] == []
    # only an admin re-drives in bulk or pauses
    assert bob.post("/api/v1/tasks/retry", json={}).status_code == 403
    assert bob.post("/api/v1/admin/mailboxes/channel_pool/pause").status_code == 403

    sink.default_status = 200
    retried = alice.post(f"/api/v1/tasks/{task['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["state"], retried.json()["attempts"]) == ("ready", 0)
    alice.wait_message(message_id, ("delivered",))
    assert message_id in delivered_ids(sink)
    timeline = [e["type"] for e in alice.get(f"/api/v1/messages/{message_id}").json()["events"]]
    assert "retry" in timeline and timeline[-1] == "delivered", timeline

    done = until(lambda: the_send(alice, message_id)["state"] == "done", 30, "the entry done")
    assert done
    again = alice.post(f"/api/v1/tasks/{task['id']}/retry")
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_retryable"
    assert "done" in again.json()["error"]["message"]
    cancel = alice.post(f"/api/v1/tasks/{task['id']}/cancel")
    assert cancel.status_code == 409 and cancel.json()["error"]["code"] == "not_cancellable"

    for bad in ("state=sleeping", "mailbox=nowhere", "message_id=abc", "limit=0"):
        refused = alice.get(f"/api/v1/tasks?{bad}")
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["details"][0]["field"] == bad.split("=")[0]
    assert alice.get("/api/v1/tasks/99999999").status_code == 404
    row = audited(admin, "POST /api/v1/tasks/{task_id}/retry", "alice", {"ok", "error"})
    assert {r["target"] for r in row} == {str(task["id"])}


def test_a_paused_channel_holds_its_sends_while_others_go_and_a_cancel_ends_its_delivery(
    server_factory, sink
):
    server = server_factory(ENV)
    admin = server.client(server.create_key())
    alice = user(server, "alice")
    paused = webhook(alice, sink.url + "/paused", name="paused")
    webhook(alice, sink.url + "/open", name="open")

    pause = admin.post(f"/api/v1/channels/{paused['id']}/pause")
    assert pause.status_code == 200, pause.text
    assert pause.json()["paused"] is True and pause.json()["paused_by"] == "admin"
    assert alice.post(f"/api/v1/channels/{paused['id']}/pause").status_code == 403
    assert admin.post("/api/v1/channels/99999999/pause").status_code == 404
    listed = admin.get("/api/v1/admin/pauses").json()
    assert [c["id"] for c in listed["channels"]] == [paused["id"]]
    assert "channel_pool" in listed["known_mailboxes"]

    # sent first, so any claim that reaches the second message passes over the first
    to_cancel = send(alice, "held then cancelled", "paused")
    kept = send(alice, "held then sent", "paused")
    through = send(alice, "not paused", "open")
    alice.wait_message(through, ("delivered",))
    held(alice, sink, [to_cancel, kept], seconds=0.5)

    task = the_send(alice, to_cancel)
    cancelled = alice.post(f"/api/v1/tasks/{task['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    message = alice.wait_message(to_cancel, ("cancelled",))
    assert [d["status"] for d in message["deliveries"]] == ["cancelled"]
    assert "delivery_cancelled" in [e["type"] for e in message["events"]]
    assert alice.post(f"/api/v1/tasks/{task['id']}/cancel").status_code == 409

    resumed = admin.post(f"/api/v1/channels/{paused['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert admin.get("/api/v1/admin/pauses").json()["channels"] == []
    alice.wait_message(kept, ("delivered",))
    assert to_cancel not in {r["body"]["id"] for r in sink.received(None)}
    audited(admin, "POST /api/v1/channels/{channel_id}/pause", "admin")


def test_bulk_re_drive_delivers_500_dead_letters_once_the_sink_recovers(server_factory, sink):
    server = server_factory(ENV)
    admin = server.client(server.create_key())
    webhook(admin, sink.url + "/bulk")
    sink.default_status = 503
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda n: send(admin, f"bulk {n}", "hook"), range(500)))

    def dead_count() -> int:
        depths = admin.get("/api/v1/admin/status").json()["mailbox"]
        return sum(
            q["count"] for q in depths if q["recipient"] == "channel_pool" and q["state"] == "dead"
        )

    until(lambda: dead_count() == 500, 120, "500 dead letters")
    assert len(sink.received(None)) == 1000  # two attempts each, both refused
    sink.default_status = 200

    unconfirmed = admin.post("/api/v1/tasks/retry", json={"mailbox": "channel_pool"})
    assert unconfirmed.status_code == 403, unconfirmed.text
    assert unconfirmed.json()["error"]["code"] == "confirmation_required"
    assert dead_count() == 500
    bad = admin.post("/api/v1/tasks/retry", json={"state": "done"}, headers=CONFIRM)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "state"

    redriven = admin.post(
        "/api/v1/tasks/retry", json={"mailbox": "channel_pool", "state": "dead"}, headers=CONFIRM
    )
    assert redriven.status_code == 200, redriven.text
    assert redriven.json() | {"refusals": []} == {
        "matched": 500,
        "retried": 500,
        "refused": 0,
        "refusals": [],
        "more": False,
    }
    sink.wait_for(lambda got: {r["body"]["id"] for r in got if r["status"] == 200} >= set(ids), 120)
    assert sorted(r["body"]["id"] for r in sink.received(200)) == sorted(ids)  # each once
    until(
        lambda: (
            rows(db_file(server), "SELECT COUNT(*) FROM message WHERE status = 'delivered'")
            == [(500,)]
        ),
        60,
        "500 messages delivered",
    )
    assert dead_count() == 0
    [row] = [r for r in audited(admin, "POST /api/v1/tasks/retry", "admin") if r["outcome"] == "ok"]
    assert row["detail"]["retried"] == 500 and row["target"] == "500 entries"


def test_a_paused_mailbox_stays_paused_across_a_restart_and_resumes(server_factory, sink, tmp_path):
    server = server_factory(ENV, data_dir=tmp_path / "one")
    admin = server.client(server.create_key())
    webhook(admin, sink.url + "/restart")
    assert admin.post("/api/v1/admin/mailboxes/nowhere/pause").status_code == 404
    paused = admin.post("/api/v1/admin/mailboxes/channel_pool/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True, paused.text
    before = send(admin, "queued before the restart", "hook")
    held(admin, sink, [before])

    assert server.stop() == 0
    server.start()
    assert paused_mailboxes(admin) == ["channel_pool"]
    after = send(admin, "queued after the restart", "hook")
    held(admin, sink, [before, after])

    resumed = admin.post("/api/v1/admin/mailboxes/channel_pool/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert paused_mailboxes(admin) == []
    for message_id in (before, after):
        admin.wait_message(message_id, ("delivered",))


def test_pauses_hold_in_two_processes_sharing_one_sqlite_file(server_factory, sink, tmp_path):
    first = server_factory(ENV, data_dir=tmp_path / "shared")
    second = server_factory(ENV, data_dir=tmp_path / "shared")
    key = first.create_key()
    one, two = first.client(key), second.client(key)
    channel = webhook(one, sink.url + "/paused", name="paused")
    webhook(one, sink.url + "/open", name="open")

    # a channel paused through one process: the other's claims pass over its sends too
    assert one.post(f"/api/v1/channels/{channel['id']}/pause").status_code == 200
    waiting = [send(one, "held by one", "paused"), send(two, "held by two", "paused")]
    passing = [send(one, "through one", "open"), send(two, "through two", "open")]
    for message_id in passing:
        two.wait_message(message_id, ("delivered",))
    held(two, sink, waiting, seconds=0.5)
    assert two.post(f"/api/v1/channels/{channel['id']}/resume").status_code == 200
    for message_id in waiting:
        one.wait_message(message_id, ("delivered",))

    # a mailbox paused through one process, seen and lifted through the other
    assert two.post("/api/v1/admin/mailboxes/channel_pool/pause").status_code == 200
    assert paused_mailboxes(one) == ["channel_pool"]
    stalled = [send(one, "stalled in one", "open"), send(two, "stalled in two", "open")]
    held(one, sink, stalled)
    assert one.post("/api/v1/admin/mailboxes/channel_pool/resume").status_code == 200
    for message_id in stalled:
        two.wait_message(message_id, ("delivered",))
    assert first.proc.poll() is None and second.proc.poll() is None
