"""The durable mailbox driven synchronously: claims, leases, acks, retries, recovery, depths.

On a real SQLite file and a fresh PostgreSQL schema; the clock and jitter are injected.
"""

from __future__ import annotations

import os
import socket
import subprocess

import psutil
import pytest
from support.databases import database_on
from support.ops import until

from messagepusher.supervisor.mailbox import NODE_ID, Mailbox, NewEntry, owner_for, owner_is_dead
from messagepusher.supervisor.models import Channel, Delivery, MailboxEntry, Message, User
from messagepusher.supervisor.retry import RetryPolicy

START = 1_700_000_000.0
ALICE = owner_for("channel_pool")
BOB = "other-host:4242:1700000000/channel_pool"  # another host: its leases are never judged here
LEASE = 30.0


class Clock:
    def __init__(self) -> None:
        self.t = START

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Rand:
    """A random source that returns what the test sets (0.5 = no jitter)."""

    def __init__(self) -> None:
        self.value = 0.5

    def __call__(self) -> float:
        return self.value


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """This file's database tests run on SQLite and on PostgreSQL."""
    yield from database_on(request, tmp_path)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def rand():
    return Rand()


@pytest.fixture
def mailbox(db, clock, rand):
    policy = RetryPolicy(max_attempts=5, base_delay_seconds=2.0, max_delay_seconds=60.0, jitter=0.2)
    return Mailbox(db, policy, now=clock, rand=rand)


def row(entry_id: int) -> MailboxEntry:
    return MailboxEntry.get_by_id(entry_id)


def dead_owner(actor: str = "channel_pool") -> str:
    """This host and pid, but an earlier start time: a process that has since died."""
    started = int(psutil.Process().create_time())
    return f"{socket.gethostname()}:{os.getpid()}:{started - 1000}/{actor}"


# --- putting and claiming ------------------------------------------------------------------


def test_claim_takes_the_highest_priority_first_then_the_oldest(mailbox, clock):
    low = mailbox.put("channel_pool", "send", {"n": "low"}, priority=1)
    old = mailbox.put("channel_pool", "send", {"n": "old"}, priority=3)
    clock.advance(1)
    new = mailbox.put("channel_pool", "send", {"n": "new"}, priority=3)
    urgent = mailbox.put("channel_pool", "send", {"n": "urgent"}, priority=5)
    claimed = mailbox.claim("channel_pool", 10, LEASE, ALICE)
    assert [e.id for e in claimed] == [urgent, old, new, low]


def test_claim_takes_at_most_n_entries_in_order_across_successive_claims(mailbox):
    ids = [mailbox.put("channel_pool", "send", {"i": i}) for i in range(5)]
    assert [e.id for e in mailbox.claim("channel_pool", 2, LEASE, ALICE)] == ids[:2]
    assert [e.id for e in mailbox.claim("channel_pool", 2, LEASE, ALICE)] == ids[2:4]
    assert [e.id for e in mailbox.claim("channel_pool", 2, LEASE, ALICE)] == ids[4:]
    assert mailbox.claim("channel_pool", 2, LEASE, ALICE) == []


def test_claim_takes_only_the_named_recipient_s_entries(mailbox):
    mailbox.put("fetcher", "fetch", {"message_id": 1})
    mine = mailbox.put("channel_pool", "send", {"delivery_id": 1})
    assert [e.id for e in mailbox.claim("channel_pool", 10, LEASE, ALICE)] == [mine]


def test_a_claimed_entry_carries_its_payload_kind_attempts_and_user(mailbox):
    entry_id = mailbox.put(
        "channel_pool", "send", {"delivery_id": 7, "text": "héllo"}, user_id=3, max_attempts=9
    )
    (entry,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
    assert (entry.id, entry.recipient, entry.kind) == (entry_id, "channel_pool", "send")
    assert entry.payload == {"delivery_id": 7, "text": "héllo"}
    assert (entry.attempts, entry.max_attempts, entry.user_id, entry.priority) == (1, 9, 3, 3)


def test_a_claimed_entry_is_leased_to_its_owner_until_the_lease_expires(mailbox, clock):
    entry_id = mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, LEASE, ALICE)
    leased = row(entry_id)
    assert (leased.state, leased.lease_owner, leased.lease_expires_at) == (
        "leased",
        ALICE,
        START + LEASE,
    )
    clock.advance(LEASE - 0.001)
    assert mailbox.claim("channel_pool", 1, LEASE, BOB) == []


def test_an_entry_is_not_claimed_before_its_available_at(mailbox, clock):
    entry_id = mailbox.put("channel_pool", "send", {}, available_at=START + 10)
    assert mailbox.claim("channel_pool", 1, LEASE, ALICE) == []
    clock.advance(10)
    assert [e.id for e in mailbox.claim("channel_pool", 1, LEASE, ALICE)] == [entry_id]


def test_put_many_inserts_every_entry_even_past_one_statement_s_row_limit(mailbox):
    given = mailbox.put_many(NewEntry("channel_pool", "send", {"i": i}) for i in range(1234))
    assert given == 1234
    claimed = mailbox.claim("channel_pool", 2000, LEASE, ALICE)
    assert sorted(e.payload["i"] for e in claimed) == list(range(1234))


def test_put_many_of_nothing_writes_nothing(mailbox):
    assert mailbox.put_many([]) == 0
    assert MailboxEntry.select().count() == 0


def test_a_dedupe_key_queues_the_same_work_only_once(mailbox):
    first = mailbox.put("channel_pool", "callback", {"message_id": 1}, dedupe_key="callback:1")
    mailbox.put("channel_pool", "callback", {"message_id": 2}, dedupe_key="callback:2")
    assert first is not None
    assert (
        mailbox.put("channel_pool", "callback", {"message_id": 1}, dedupe_key="callback:1") is None
    )
    mailbox.put_many(
        [
            NewEntry("channel_pool", "callback", {"message_id": 1}, dedupe_key="callback:1"),
            NewEntry("channel_pool", "callback", {"message_id": 3}, dedupe_key="callback:3"),
        ]
    )
    keys = [r.dedupe_key for r in MailboxEntry.select().order_by(MailboxEntry.id)]
    assert keys == ["callback:1", "callback:2", "callback:3"]


def test_entries_without_a_dedupe_key_are_never_deduplicated(mailbox):
    assert mailbox.put("channel_pool", "send", {}) != mailbox.put("channel_pool", "send", {})
    assert MailboxEntry.select().count() == 2


# --- ack -------------------------------------------------------------------------------------


def test_ack_marks_the_entry_done_and_it_is_never_claimed_again(mailbox, clock):
    entry_id = mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, LEASE, ALICE)
    assert mailbox.ack(entry_id, ALICE) is True
    done = row(entry_id)
    assert (done.state, done.lease_owner, done.lease_expires_at) == ("done", None, None)
    clock.advance(LEASE * 10)
    assert mailbox.claim("channel_pool", 1, LEASE, ALICE) == []


def test_an_expired_lease_is_reclaimed_and_processed_by_another_owner(mailbox, clock):
    entry_id = mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, LEASE, ALICE)
    clock.advance(LEASE)
    (again,) = mailbox.claim("channel_pool", 1, LEASE, BOB)
    assert (again.id, again.attempts) == (entry_id, 2)
    assert row(entry_id).lease_owner == BOB
    assert mailbox.ack(entry_id, ALICE) is False, "the first owner lost its lease"
    assert mailbox.ack(entry_id, BOB) is True
    assert row(entry_id).state == "done"


def test_ack_of_an_entry_already_done_returns_false(mailbox):
    entry_id = mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, LEASE, ALICE)
    assert mailbox.ack(entry_id, ALICE) is True
    assert mailbox.ack(entry_id, ALICE) is False


def test_ack_many_marks_a_batch_done_in_one_statement_and_counts_only_our_leases(mailbox, clock):
    ids = [mailbox.put("channel_pool", "send", {"i": i}) for i in range(4)]
    mailbox.claim("channel_pool", 2, LEASE, ALICE)
    mailbox.claim("channel_pool", 2, LEASE, BOB)
    assert mailbox.ack_many(ids, ALICE) == 2
    assert [row(i).state for i in ids] == ["done", "done", "leased", "leased"]
    assert mailbox.ack_many([], ALICE) == 0


# --- nack: retries and dead letters ---------------------------------------------------------


@pytest.mark.parametrize(("rand_value", "spread"), [(0.5, 1.0), (0.0, 0.8), (1.0, 1.2)])
def test_nack_back_off_doubles_per_attempt_with_jitter_and_is_capped_at_max_delay(
    mailbox, clock, rand, rand_value, spread
):
    rand.value = rand_value
    entry_id = mailbox.put("channel_pool", "send", {}, max_attempts=20)
    waits = []
    for _ in range(8):
        (entry,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
        assert mailbox.nack(entry, ALICE, "HTTP 503") == "failed"
        due = row(entry_id).available_at
        waits.append(round(due - clock(), 6))
        clock.advance(due - clock() - 0.001)
        assert mailbox.claim("channel_pool", 1, LEASE, ALICE) == [], (
            "claimed before its back-off ended"
        )
        clock.advance(0.001)
    raw = [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]  # base * 2^(attempts-1), capped at 60
    assert waits == pytest.approx([r * spread for r in raw])


def test_a_failed_entry_keeps_its_error_and_is_claimed_again_when_due(mailbox, clock):
    entry_id = mailbox.put("channel_pool", "send", {})
    (entry,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
    mailbox.nack(entry, ALICE, "connection refused")
    failed = row(entry_id)
    assert (failed.state, failed.last_error, failed.lease_owner) == (
        "failed",
        "connection refused",
        None,
    )
    clock.advance(2.0)
    (again,) = mailbox.claim("channel_pool", 1, LEASE, BOB)
    assert again.attempts == 2


def test_retry_after_overrides_the_back_off(mailbox, clock):
    entry_id = mailbox.put("channel_pool", "send", {})
    (entry,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
    assert mailbox.nack(entry, ALICE, "HTTP 429", retry_after=120.0) == "failed"
    assert row(entry_id).available_at == START + 120.0


def test_a_negative_retry_after_means_retry_at_once(mailbox):
    entry_id = mailbox.put("channel_pool", "send", {})
    (entry,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
    mailbox.nack(entry, ALICE, "HTTP 429", retry_after=-5)
    assert row(entry_id).available_at == START


def test_an_entry_that_always_fails_is_dead_after_max_attempts_with_its_last_error(mailbox, clock):
    entry_id = mailbox.put("channel_pool", "send", {}, max_attempts=3)
    states = []
    for attempt in range(1, 4):
        (entry,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
        assert entry.attempts == attempt
        states.append(mailbox.nack(entry, ALICE, f"HTTP 500 on attempt {attempt}"))
        clock.advance(3600)
    assert states == ["failed", "failed", "dead"]
    dead = row(entry_id)
    assert (dead.state, dead.attempts, dead.last_error) == ("dead", 3, "HTTP 500 on attempt 3")
    assert mailbox.claim("channel_pool", 1, LEASE, ALICE) == []


def test_the_policy_s_max_attempts_applies_when_the_entry_names_none(mailbox, clock):
    mailbox.put("channel_pool", "send", {})
    states = []
    for _ in range(5):
        (entry,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
        states.append(mailbox.nack(entry, ALICE, "boom"))
        clock.advance(3600)
    assert states == ["failed"] * 4 + ["dead"]


def test_a_permanent_failure_is_dead_at_once(mailbox):
    entry_id = mailbox.put("channel_pool", "send", {})
    (entry,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
    assert mailbox.nack(entry, ALICE, "HTTP 404: no such webhook", permanent=True) == "dead"
    assert row(entry_id).last_error == "HTTP 404: no such webhook"


def test_a_long_error_is_kept_truncated(mailbox):
    entry_id = mailbox.put("channel_pool", "send", {})
    (entry,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
    mailbox.nack(entry, ALICE, "x" * 10_000)
    assert len(row(entry_id).last_error) == 4000


def test_nack_after_the_lease_was_lost_reports_lost_and_changes_nothing(mailbox, clock):
    entry_id = mailbox.put("channel_pool", "send", {})
    (mine,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
    clock.advance(LEASE)
    mailbox.claim("channel_pool", 1, LEASE, BOB)
    assert mailbox.nack(mine, ALICE, "too late") == "lost"
    kept = row(entry_id)
    assert (kept.state, kept.lease_owner, kept.last_error) == ("leased", BOB, None)


def test_a_late_nack_never_reopens_a_finished_entry_that_still_names_an_owner(mailbox):
    # Every write that ends a lease clears its owner; nack's state check is what keeps a
    # finished row closed should a hand-made fix-up or a future writer leave the owner set.
    ids = [mailbox.put("channel_pool", "send", {"i": i}) for i in range(4)]
    done_by_alice, done_by_bob, released, leased = mailbox.claim("channel_pool", 4, LEASE, ALICE)
    mailbox.ack_many([done_by_alice.id, done_by_bob.id], ALICE)
    mailbox.release([released.id], ALICE)
    for entry_id, owner in ((ids[0], ALICE), (ids[1], BOB), (ids[2], ALICE)):
        MailboxEntry.update(lease_owner=owner).where(MailboxEntry.id == entry_id).execute()
    assert mailbox.nack(leased, ALICE, "HTTP 503") == "failed"
    assert [row(i).state for i in ids] == ["done", "done", "ready", "failed"]
    for late in (done_by_alice, done_by_bob, released):
        assert mailbox.nack(late, ALICE, "late") == "lost"
    assert [row(i).state for i in ids] == ["done", "done", "ready", "failed"]


def test_a_nack_touches_only_its_own_entry_among_the_owner_s_leases(mailbox):
    first, second = (mailbox.put("channel_pool", "send", {"i": i}) for i in range(2))
    entry, _ = mailbox.claim("channel_pool", 2, LEASE, ALICE)
    assert entry.id == first
    assert mailbox.nack(entry, ALICE, "HTTP 503") == "failed"
    assert (row(first).state, row(second).state) == ("failed", "leased")


@pytest.mark.parametrize("new_owner", ["a-host:1:1/channel_pool", "z-host:1:1/channel_pool"])
def test_a_nack_by_an_owner_who_lost_the_lease_leaves_the_new_owner_s_lease(
    mailbox, clock, new_owner
):
    # Owners are compared for equality only, whichever sorts first.
    entry_id = mailbox.put("channel_pool", "send", {})
    (mine,) = mailbox.claim("channel_pool", 1, LEASE, "m-host:1:1/channel_pool")
    clock.advance(LEASE)
    mailbox.claim("channel_pool", 1, LEASE, new_owner)
    assert mailbox.nack(mine, "m-host:1:1/channel_pool", "too late") == "lost"
    assert (row(entry_id).state, row(entry_id).lease_owner) == ("leased", new_owner)


def test_an_entry_of_priority_zero_keeps_its_payload(mailbox):
    mailbox.put("channel_pool", "send", {"delivery_id": 5}, priority=0)
    (entry,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
    assert (entry.priority, entry.payload) == (0, {"delivery_id": 5})


# --- leases: extend, release, defer -----------------------------------------------------------


def test_extend_lease_keeps_a_slow_entry_from_being_reclaimed(mailbox, clock):
    entry_id = mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, LEASE, ALICE)
    clock.advance(LEASE - 1)
    assert mailbox.extend_lease([entry_id], ALICE, LEASE) == 1
    clock.advance(2)
    assert mailbox.claim("channel_pool", 1, LEASE, BOB) == []
    assert row(entry_id).lease_expires_at == START + 2 * LEASE - 1
    assert mailbox.ack(entry_id, ALICE) is True


def test_extend_lease_touches_only_the_caller_s_own_leases(mailbox):
    mine = mailbox.put("channel_pool", "send", {})
    theirs = mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, LEASE, ALICE)
    mailbox.claim("channel_pool", 1, LEASE, BOB)
    assert mailbox.extend_lease([mine, theirs], ALICE, 999) == 1
    assert row(theirs).lease_expires_at == START + LEASE
    assert mailbox.extend_lease([], ALICE, 999) == 0


def test_release_gives_entries_back_at_once_without_counting_the_attempt(mailbox):
    entry_id = mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, LEASE, ALICE)
    assert mailbox.release([entry_id], ALICE) == 1
    released = row(entry_id)
    assert (released.state, released.attempts, released.lease_owner) == ("ready", 0, None)
    (again,) = mailbox.claim("channel_pool", 1, LEASE, BOB)
    assert again.attempts == 1


def test_release_of_an_entry_leased_by_another_owner_does_nothing(mailbox):
    entry_id = mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, LEASE, BOB)
    assert mailbox.release([entry_id], ALICE) == 0
    assert row(entry_id).lease_owner == BOB


def test_defer_puts_an_entry_back_until_a_time_without_counting_the_attempt(mailbox, clock):
    entry_id = mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, LEASE, ALICE)
    assert mailbox.defer([entry_id], ALICE, START + 5) == 1
    assert mailbox.claim("channel_pool", 1, LEASE, ALICE) == []
    clock.advance(5)
    (again,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
    assert (again.id, again.attempts) == (entry_id, 1)


# --- recovery after a crash ------------------------------------------------------------------


def test_recover_makes_what_an_earlier_incarnation_leased_claimable_at_once(mailbox):
    ids = [mailbox.put("channel_pool", "send", {}) for _ in range(3)]
    mailbox.claim("channel_pool", 2, LEASE, ALICE)
    assert mailbox.claim("channel_pool", 5, LEASE, ALICE) != []  # the third, still ready
    assert mailbox.recover("channel_pool", ALICE) == 3
    assert sorted(e.id for e in mailbox.claim("channel_pool", 5, LEASE, ALICE)) == ids


def test_recover_reclaims_at_once_the_entries_of_a_dead_process_on_this_host(mailbox):
    gone = dead_owner()
    entry_id = mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, 3600, gone)
    assert mailbox.recover("channel_pool", ALICE) == 1
    (again,) = mailbox.claim("channel_pool", 1, LEASE, ALICE)
    assert (again.id, again.attempts) == (entry_id, 2)


def test_recover_leaves_leases_of_live_processes_and_other_hosts_to_expire(mailbox, clock):
    sibling = owner_for("fetcher")  # alive: this very process, another actor name
    mailbox.put("channel_pool", "send", {})
    mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, LEASE, sibling)
    mailbox.claim("channel_pool", 1, LEASE, BOB)
    assert mailbox.recover("channel_pool", ALICE) == 0
    assert mailbox.claim("channel_pool", 5, LEASE, ALICE) == []
    clock.advance(LEASE)
    assert len(mailbox.claim("channel_pool", 5, LEASE, ALICE)) == 2


def test_recover_touches_only_its_own_recipient(mailbox):
    mailbox.put("fetcher", "fetch", {})
    mailbox.claim("fetcher", 1, 3600, dead_owner("fetcher"))
    assert mailbox.recover("channel_pool", ALICE) == 0
    assert mailbox.recover("fetcher", owner_for("fetcher")) == 1


def test_owner_is_dead_judges_only_processes_on_this_host():
    assert owner_is_dead(owner_for("x")) is False
    assert owner_is_dead(dead_owner()) is True
    assert owner_is_dead(f"{socket.gethostname()}:{2**22 + 12345}:1/x") is True  # no such pid
    assert owner_is_dead(BOB) is False
    assert owner_is_dead("not an owner id") is False
    assert NODE_ID.split(":")[1] == str(os.getpid())


def test_the_owner_of_an_exited_process_nobody_has_reaped_is_dead():
    """A worker orphaned by a killed root stays a zombie where no init reaps it (a container)."""
    child = subprocess.Popen(["true"])
    try:
        until(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 10)
        started = int(psutil.Process(child.pid).create_time())
        assert owner_is_dead(f"{socket.gethostname()}:{child.pid}:{started}/channel_pool") is True
    finally:
        child.wait()


# --- looking -----------------------------------------------------------------------------------


def test_depths_count_per_recipient_and_state_with_the_oldest_ready_age(mailbox, clock):
    mailbox.put("channel_pool", "send", {})
    clock.advance(5)
    mailbox.put("channel_pool", "send", {})
    mailbox.put("channel_pool", "send", {}, available_at=START + 100)  # delayed: not yet due
    mailbox.put("fetcher", "fetch", {})
    clock.advance(10)
    (leased,) = mailbox.claim("fetcher", 1, LEASE, ALICE)
    mailbox.put("fetcher", "fetch", {})
    mailbox.put("ai_pool", "ai", {})
    (doomed,) = mailbox.claim("ai_pool", 1, LEASE, ALICE)
    mailbox.nack(doomed, ALICE, "bad", permanent=True)
    depths = {
        (d["recipient"], d["state"]): (d["count"], d["oldest_ready_age_seconds"])
        for d in mailbox.depths()
    }
    assert depths == {
        ("channel_pool", "ready"): (3, 15.0),
        ("fetcher", "leased"): (1, 0.0),
        ("fetcher", "ready"): (1, 0.0),
        ("ai_pool", "dead"): (1, 0.0),
    }


def test_depths_leave_out_finished_work(mailbox):
    entry_id = mailbox.put("channel_pool", "send", {})
    mailbox.claim("channel_pool", 1, LEASE, ALICE)
    mailbox.ack(entry_id, ALICE)
    assert mailbox.depths() == []


def test_next_due_gives_the_earliest_time_per_recipient_including_lease_expiry(mailbox, clock):
    mailbox.put("channel_pool", "send", {}, available_at=START + 50)
    mailbox.put("channel_pool", "send", {}, available_at=START + 20)
    mailbox.put("fetcher", "fetch", {})
    mailbox.claim("fetcher", 1, LEASE, ALICE)
    assert mailbox.next_due() == {"channel_pool": START + 20, "fetcher": START + LEASE}


# --- pauses in the claim ---------------------------------------------------------------------


def deliveries_on(channel_names: list[str]) -> dict[str, int]:
    """A user, one webhook channel per name and one message with a delivery to each:
    {channel name: delivery id}."""
    user = User.create(username="pauser", password_hash="x", created_at=START, updated_at=START)
    message = Message.create(
        user=user, status="queued", accepted_status="queued", created_at=START, updated_at=START
    )
    out = {}
    for name in channel_names:
        channel = Channel.create(
            user=user, name=name, type="webhook", config="{}", created_at=START, updated_at=START
        )
        out[name] = Delivery.create(
            message=message,
            channel=channel,
            channel_name=name,
            channel_type="webhook",
            status="pending",
            created_at=START,
            updated_at=START,
        ).id
    return out


def test_a_paused_channels_sends_are_parked_and_the_others_claimed_past_them(mailbox):
    ids = deliveries_on(["held", "free"])
    held = mailbox.put("channel_pool", "send", {"delivery_id": ids["held"]}, priority=5)
    free = mailbox.put("channel_pool", "send", {"delivery_id": ids["free"]}, priority=1)
    mailbox.pause("ops", channel_id=Delivery.get_by_id(ids["held"]).channel_id)
    assert [e.id for e in mailbox.claim("channel_pool", 1, LEASE, ALICE)] == [free]
    assert row(held).state == "ready" and row(held).available_at > START + 86400
    mailbox.resume(channel_id=Delivery.get_by_id(ids["held"]).channel_id)
    assert [e.id for e in mailbox.claim("channel_pool", 1, LEASE, ALICE)] == [held]


def test_a_channel_pause_holds_only_the_channel_pools_sends(mailbox):
    ids = deliveries_on(["held"])
    mailbox.pause("ops", channel_id=Delivery.get_by_id(ids["held"]).channel_id)
    fetch = mailbox.put("fetcher", "fetch", {"delivery_id": ids["held"]})
    callback = mailbox.put("channel_pool", "callback", {"message_id": 1, "url": "http://x.test"})
    assert [e.id for e in mailbox.claim("fetcher", 5, LEASE, ALICE)] == [fetch]
    assert [e.id for e in mailbox.claim("channel_pool", 5, LEASE, ALICE)] == [callback]


def test_without_a_channel_pause_nothing_is_parked(mailbox):
    ids = deliveries_on(["a"])
    entry = mailbox.put("channel_pool", "send", {"delivery_id": ids["a"]})
    mailbox.pause("ops", mailbox="fetcher")  # a pause elsewhere
    assert [e.id for e in mailbox.claim("channel_pool", 5, LEASE, ALICE)] == [entry]
