"""The dispatcher: keeps the clock of the mailboxes.

It wakes each pool when its delayed entries, retries or expired leases fall due,
and tells the pools to extend the leases of work still in flight. Which stage follows
which is `lifecycle`'s decision, queued by `store.start_stage`.
"""

from __future__ import annotations

import logging

from messagepusher.supervisor.actor import TICK, MailboxActor

log = logging.getLogger(__name__)

POOLS = ("channel_pool", "ai_pool", "fetcher")


class DispatcherActor(MailboxActor):
    """Scans for due work when woken and on a timer. Every method runs in the dispatcher's
    thread: the timer is a TICK told by the process ticker, re-armed by each scan.

    A failing scan (database busy) is logged and retried at the next tick rather
    than crashing the actor.
    """

    name = "dispatcher"

    def setup(self) -> None:
        """Actor thread: read the scan interval. The WAKE that follows on_start does the first scan."""
        self.interval = self.settings.mailbox.scan_interval_seconds

    def on_wake(self) -> None:
        """Actor thread, told by whoever queued delayed work: scan now."""
        self.scan()

    def on_tick(self) -> None:
        """Actor thread, told by its timer: scan."""
        self.scan()

    def scan(self) -> None:
        """Actor thread: wake pools with due work, tick the pools, arm the timer for the next due.

        Only an injected fault raises (crashing the actor); database errors are logged.
        """
        self.faults.before_entry(self.name)
        now = self.clock.now()
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
        self.timers.after("scan", max(0.01, next_at - self.clock.now()), TICK)
