"""The dispatcher: routes a message to its next stage and keeps the clock of the mailboxes.

It wakes each pool when its delayed entries, retries or expired leases fall due,
and tells the pools to extend the leases of work still in flight.
"""

from __future__ import annotations

import logging

from messagepusher.actors import lifecycle
from messagepusher.supervisor.actor import TICK, MailboxActor
from messagepusher.supervisor.mailbox import Mailbox, NewEntry
from messagepusher.supervisor.models import Delivery, Message, MessageEvent

log = logging.getLogger(__name__)

POOLS = ("channel_pool", "ai_pool", "fetcher")


def send_entry(
    delivery_id: int,
    message_id: int,
    priority: int,
    user_id: int,
    available_at: float | None = None,
) -> NewEntry:
    """The channel_pool work item that sends one delivery."""
    return NewEntry(
        "channel_pool",
        "send",
        {"delivery_id": delivery_id, "message_id": message_id},
        priority=priority,
        available_at=available_at,
        user_id=user_id,
    )


def route(mailbox: Mailbox, message: Message, stage: str, now: float) -> set[str]:
    """Queue the message's `stage` (fetch, ai or send); return the recipient to wake.

    Runs inside the caller's write transaction (the fetcher's or the AI pool's).
    """
    if stage == "send":
        pending = [
            d.id
            for d in Delivery.select(Delivery.id).where(
                (Delivery.message == message.id) & (Delivery.status == "pending")
            )
        ]
        mailbox.put_many(
            send_entry(d, message.id, message.priority, message.user_id) for d in pending
        )
    else:
        mailbox.put_many(
            [
                NewEntry(
                    lifecycle.STAGE_RECIPIENT[stage],
                    stage,
                    {"message_id": message.id},
                    priority=message.priority,
                    user_id=message.user_id,
                )
            ]
        )
    status = lifecycle.STAGE_STATUS[stage]
    Message.update(status=status, updated_at=now).where(
        (Message.id == message.id) & Message.status.not_in(lifecycle.MESSAGE_FINAL)
    ).execute()
    if stage == "send":  # the fetcher and AI pool record their own start when they take the work
        MessageEvent.create(message=message.id, at=now, type=status, detail=None)
    return {lifecycle.STAGE_RECIPIENT[stage]}


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
