"""The dispatcher: keeps the clock of the mailboxes.

It wakes each pool when its delayed entries, retries or expired leases fall due,
and tells the pools to extend the leases of work still in flight. Which stage follows
which is `lifecycle`'s decision, queued by `store.start_stage`.
"""

from __future__ import annotations

import logging
import threading
import time

from messagepusher.supervisor.actor import TICK, MailboxActor, Tick

log = logging.getLogger(__name__)

POOLS = ("channel_pool", "ai_pool", "fetcher")


class DispatcherActor(MailboxActor):
    """Scans for due work on a timer. Every method runs in the dispatcher's thread.

    A failing scan (database busy) is logged and retried at the next tick rather
    than crashing the actor.
    """

    name = "dispatcher"

    def setup(self) -> None:
        self.timer: threading.Timer | None = None
        self.interval = self.settings.mailbox.scan_interval_seconds

    def on_wake(self) -> None:
        self.scan()

    def on_tick(self) -> None:
        self.scan()

    def scan(self) -> None:
        self.faults.before_entry(self.name)
        now = self.runtime.clock.now()
        next_at = now + self.interval
        try:
            due = self.mailbox.next_due()
        except Exception:  # noqa: BLE001 - the database may be busy or restoring; try again soon
            log.warning("dispatcher: scan failed; retrying in %gs", self.interval, exc_info=True)
            due = {}
        for recipient, at in due.items():
            if at <= now:
                self.runtime.wake(recipient)
            else:
                next_at = min(next_at, at)
        for pool in POOLS:
            self.runtime.tell(pool, TICK)
        self._schedule(max(0.01, next_at - time.time()))

    def _schedule(self, delay: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = threading.Timer(delay, self._tick)
        self.timer.daemon = True
        self.timer.start()

    def _tick(self) -> None:
        if self.actor_ref.is_alive():
            self.actor_ref.tell(Tick())

    def teardown(self, crashed: bool) -> None:
        if getattr(self, "timer", None) is not None:
            self.timer.cancel()
