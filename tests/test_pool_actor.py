"""PoolActor on its own: results written back by the actor thread, poison entries given up."""

from __future__ import annotations

import threading
import time

import pytest

from messagepusher.accounts.users import open_accounts
from messagepusher.supervisor.actor import (
    FlushSignal,
    Job,
    PerJobPoolActor,
    PoisonEntry,
    write_back_now,
)
from messagepusher.supervisor.config import load_settings
from messagepusher.supervisor.models import MailboxEntry
from messagepusher.supervisor.runtime import Runtime


class EchoPool(PerJobPoolActor):
    name = "channel_pool"
    workers_setting = "channel_pool"
    ran: list[int] = []
    applied: list[tuple[int, str]] = []
    done = threading.Event()

    def work(self, job: Job) -> str:
        EchoPool.ran.append(job.entry.id)
        return "ok"

    def apply(self, job: Job) -> set[str]:
        EchoPool.applied.append((job.entry.id, type(job.error).__name__ if job.error else "ok"))
        if job.error is not None:
            self.mailbox.nack(job.entry, self.owner, str(job.error))
        else:
            self.mailbox.ack(job.entry.id, self.owner)
        if len(EchoPool.applied) >= 2:
            EchoPool.done.set()
        return set()


def test_an_entry_claimed_more_often_than_max_attempts_is_dead_and_never_run_again(tmp_path):
    runtime = Runtime(load_settings(environ={"MP_DATA_DIR": str(tmp_path)}))
    runtime.open_storage()
    open_accounts(runtime)
    mailbox = runtime.mailbox
    poison = mailbox.put("channel_pool", "send", {"n": 1}, max_attempts=3)
    healthy = mailbox.put("channel_pool", "send", {"n": 2}, max_attempts=3)
    MailboxEntry.update(attempts=3).where(MailboxEntry.id == poison).execute()
    ref = EchoPool.start(runtime, 1)
    try:
        assert EchoPool.done.wait(10)
    finally:
        ref.stop()
    assert EchoPool.ran == [healthy]
    assert sorted(EchoPool.applied) == sorted([(poison, PoisonEntry.__name__), (healthy, "ok")])
    row = MailboxEntry.get_by_id(poison)
    assert row.state == "dead" and "claimed 4 times without finishing" in row.last_error
    assert MailboxEntry.get_by_id(healthy).state == "done"
    assert time.time() - row.updated_at < 60


class GatedPool(PerJobPoolActor):
    """Each send waits for the test to let it go; outcomes are acked."""

    name = "channel_pool"
    workers_setting = "channel_pool"
    gate = threading.Semaphore(0)

    def work(self, job: Job) -> str:
        assert GatedPool.gate.acquire(timeout=30), "the test never let this send go"
        return "ok"

    def apply(self, job: Job) -> set[str]:
        self.mailbox.ack(job.entry.id, self.owner)
        return set()


def _states() -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in MailboxEntry.select(MailboxEntry.state):
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def _wait_for(expected: dict[str, int]) -> None:
    deadline = time.monotonic() + 10
    while _states() != expected:
        assert time.monotonic() < deadline, f"mailbox {_states()}, expected {expected}"
        time.sleep(0.02)


def test_a_backlog_is_claimed_a_pool_ahead_and_not_again_until_a_worker_would_idle(tmp_path):
    runtime = Runtime(
        load_settings(environ={"MP_DATA_DIR": str(tmp_path), "MP_CHANNEL_POOL__WORKERS": "2"})
    )
    runtime.open_storage()
    open_accounts(runtime)
    for n in range(10):
        runtime.mailbox.put("channel_pool", "send", {"n": n})
    ref = GatedPool.start(runtime, 1)
    try:
        # Two running and two queued behind them: the first claim took twice the workers.
        _wait_for({"leased": 4, "ready": 6})
        GatedPool.gate.release()
        _wait_for({"done": 1, "leased": 3, "ready": 6})  # both workers still busy: no claim
        GatedPool.gate.release()
        _wait_for({"done": 2, "leased": 2, "ready": 6})  # still two to run: no claim
        GatedPool.gate.release()
        # One worker would idle: the claim refills to twice the workers at once.
        _wait_for({"done": 3, "leased": 4, "ready": 3})
        for _ in range(7):
            GatedPool.gate.release()
        _wait_for({"done": 10})
    finally:
        for _ in range(10):
            GatedPool.gate.release()
        ref.stop()


@pytest.mark.parametrize(
    ("finished", "in_flight", "backlog", "delay", "due", "now", "expected"),
    [
        (0, 0, False, 0.0, None, 5.0, False),  # nothing finished: nothing to write
        (0, 3, True, 0.05, 1.0, 5.0, False),
        (1, 1, False, 0.0, None, 5.0, True),  # no delay: at once
        (1, 1, False, -1.0, None, 5.0, True),  # a negative one is none
        (1, 1, False, 0.05, None, 5.0, False),  # the first of a light load waits
        (2, 2, False, 0.05, 5.05, 5.0, False),  # until its due time
        (2, 2, False, 0.05, 5.05, 5.05, True),
        (2, 2, False, 0.05, 5.05, 9.0, True),
        (1, 1, True, 0.05, None, 5.0, True),  # a backlog to claim after it: at once
        (1, 4, False, 0.05, None, 5.0, True),  # no free worker (4 of 4): at once
        (1, 5, False, 0.05, 5.05, 5.0, True),
        (1, 3, False, 0.05, None, 5.0, False),  # one worker free: it may wait
    ],
)
def test_finished_jobs_wait_for_company_only_while_the_pool_is_light(
    finished, in_flight, backlog, delay, due, now, expected
):
    assert write_back_now(finished, in_flight, 4, backlog, delay, due, now) is expected


def test_a_flush_signal_tells_once_until_taken_and_not_at_all_while_held():
    told: list[int] = []

    def tell() -> bool:
        told.append(1)
        return True

    signal = FlushSignal()
    assert signal.request(tell) and signal.request(tell) and len(told) == 1
    signal.taken()
    assert signal.request(tell) and len(told) == 2
    signal.taken()
    signal.hold()  # a timer's FLUSH is on its way: producers tell nothing
    assert signal.request(tell) and len(told) == 2
    signal.taken()
    assert signal.request(tell) and len(told) == 3


def test_a_flush_signal_that_could_not_tell_tries_again_next_time():
    outcomes = [False, True]
    signal = FlushSignal()
    assert signal.request(lambda: outcomes.pop(0)) is False
    assert signal.request(lambda: outcomes.pop(0)) is True and outcomes == []
