"""Hand intervention on mailbox entries: retry and cancel, and what each means for its message.

The state machine (messages/lifecycle.py) decides; the message store (messages/store.py) writes:
`store.reopen_deliveries` and `store.cancel_delivery`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from messagepusher.actors import recall
from messagepusher.messages import lifecycle, store
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.mailbox import CANCELLABLE, REDRIVABLE
from messagepusher.supervisor.models import Delivery, MailboxEntry, Message

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

MESSAGE_KINDS = ("fetch", "ai", "send", "callback")  # entries that carry a message's work
# Statuses in which a message still waits for its fetch or AI step (a later one means it went on).
STAGE_WAITING = {
    "fetch": ("accepted", "scheduled", "fetching"),
    "ai": ("accepted", "scheduled", "fetching", "ai_processing"),
}


@dataclass
class Outcome:
    """What a retry or cancel did: the entries it changed and, per refused entry, why not."""

    changed: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    wake: set[str] = field(default_factory=set)


def entry_refusal(state: str, allowed: tuple[str, ...], action: str) -> str | None:
    """Why an entry in `state` cannot be retried or cancelled by hand, or None. Pure."""
    if state in allowed:
        return None
    if state == "leased":
        return f"it is leased (in a worker's hands): {action} it once it is ready, failed or dead"
    return f"it is {state}: only ready, failed or dead entries can be {action}"


def retry_refusal(
    kind: str, message: Message | None, delivery: Delivery | None, payload: dict
) -> str | None:
    """Why the message's side forbids retrying an entry of `kind`, or None. Pure."""
    if kind not in MESSAGE_KINDS:
        return None
    if message is None:
        return f"message {payload.get('message_id')} no longer exists"
    if kind == "callback":
        return None
    if message.status == "cancelled":
        return f"message {message.id} was cancelled"
    if kind == "send":
        if delivery is None:
            return f"delivery {payload.get('delivery_id')} no longer exists"
        if delivery.status in lifecycle.DELIVERY_FINAL and not lifecycle.can_retry(delivery.status):
            return f"delivery {delivery.id} is {delivery.status}"
        return None
    if message.status not in STAGE_WAITING.get(kind, ()):
        return (
            f"message {message.id} went on without this step (status {message.status}); "
            "retry its deliveries instead"
        )
    return None


def retry(runtime: Runtime, entries: list[MailboxEntry], by: str) -> Outcome:
    """Put `entries` back to ready now with a fresh attempt budget, in one write transaction.

    A send entry's failed or dead delivery is pending again and its finished message queued
    again. Runs in the caller's (HTTP worker) thread; raises peewee errors only for a database
    that is unreachable. Refused entries are left as they were and named in the outcome.
    """
    outcome = Outcome()
    now = runtime.clock.now()
    with write_transaction():
        messages, deliveries = _load(entries)
        reopen: dict[int, int] = {}
        for entry in entries:
            payload = entry.payload or {}
            message = messages.get(payload.get("message_id"))
            delivery = deliveries.get(payload.get("delivery_id"))
            reason = entry_refusal(entry.state, REDRIVABLE, "retried") or retry_refusal(
                entry.kind, message, delivery, payload
            )
            if reason:
                outcome.refused[entry.id] = reason
                continue
            outcome.changed.append(entry.id)
            outcome.wake.add(entry.recipient)
            if (
                entry.kind == "send"
                and delivery is not None
                and lifecycle.can_retry(delivery.status)
            ):
                reopen[delivery.id] = delivery.message_id
        runtime.mailbox.redrive(outcome.changed)
        store.reopen_deliveries(reopen, by, now)
    return outcome


def cancel(runtime: Runtime, entry: MailboxEntry, by: str) -> Outcome:
    """Cancel one entry and its work: a send's delivery is cancelled (the message finishes when
    nothing else is left), a fetch or AI step cancels the whole message as its cancel does.

    One write transaction, in the caller's (HTTP worker) thread. Schedule fires and jobs are
    refused: they are stopped where they are defined (the schedule, the job's config).
    """
    outcome = Outcome()
    now = runtime.clock.now()
    payload = entry.payload or {}
    with write_transaction():
        reason = entry_refusal(entry.state, CANCELLABLE, "cancelled")
        if reason is None and entry.kind not in MESSAGE_KINDS:
            reason = (
                f"{entry.recipient} {entry.kind} entries are not cancelled by hand: disable the "
                "schedule or job that makes them"
            )
        if reason:
            outcome.refused[entry.id] = reason
            return outcome
        runtime.mailbox.cancel(entry.id, f"cancelled by {by}")
        outcome.changed.append(entry.id)
        message_id = payload.get("message_id")
        if entry.kind == "send":
            outcome.wake |= store.cancel_delivery(
                runtime.mailbox, payload.get("delivery_id"), message_id, by, now
            )
        elif entry.kind in ("fetch", "ai") and message_id is not None:
            recall.cancel_unsent(runtime, message_id, by, now)
    return outcome


def _load(entries: list[MailboxEntry]) -> tuple[dict[int, Message], dict[int, Delivery]]:
    message_ids = {(e.payload or {}).get("message_id") for e in entries} - {None}
    delivery_ids = {(e.payload or {}).get("delivery_id") for e in entries} - {None}
    messages = {m.id: m for m in Message.select().where(Message.id.in_(list(message_ids)))}
    deliveries = {d.id: d for d in Delivery.select().where(Delivery.id.in_(list(delivery_ids)))}
    return messages, deliveries
