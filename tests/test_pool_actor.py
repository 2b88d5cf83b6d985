"""PoolActor on its own: results written back by the actor thread, poison entries given up."""

from __future__ import annotations

import threading
import time

from messagepusher.accounts.users import open_accounts
from messagepusher.supervisor.actor import Job, PerJobPoolActor, PoisonEntry
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
