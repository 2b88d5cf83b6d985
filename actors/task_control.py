"""Hand intervention on mailbox entries: retry and cancel, and what each means for its message.

The state machine (actors/lifecycle.py) decides; the delivery writes are the two small functions
at the bottom, `reopen_deliveries` and `cancel_delivery`, so that one store can own them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from messagepusher.actors import lifecycle, recall
from messagepusher.actors.channel_pool import finish_if_final
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.mailbox import CANCELLABLE, REDRIVABLE, Mailbox
from messagepusher.supervisor.models import Delivery, MailboxEntry, Message, MessageEvent

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
        reopen_deliveries(reopen, by, now)
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
            outcome.wake |= cancel_delivery(
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


# --- the delivery writes ---------------------------------------------------------------------


def reopen_deliveries(deliveries: dict[int, int], by: str, now: float) -> None:
    """Failed and dead deliveries (id → message id) pending again with a fresh budget; their
    finished messages queued again, with a `retry` event each. In the caller's transaction."""
    if not deliveries:
        return
    ids = list(deliveries)
    Delivery.update(status="pending", attempts=0, last_error=None, updated_at=now).where(
        Delivery.id.in_(ids) & Delivery.status.in_(lifecycle.DELIVERY_FAILED)
    ).execute()
    per_message: dict[int, list[int]] = {}
    for delivery_id, message_id in deliveries.items():
        per_message.setdefault(message_id, []).append(delivery_id)
    Message.update(status="queued", finished_at=None, updated_at=now).where(
        Message.id.in_(list(per_message))
        & Message.status.in_(lifecycle.MESSAGE_FINAL)
        & (Message.status != "cancelled")
    ).execute()
    MessageEvent.insert_many(
        [
            {
                "message": message_id,
                "at": now,
                "type": "retry",
                "detail": {"deliveries": delivery_ids, "by": by, "via": "task"},
            }
            for message_id, delivery_ids in per_message.items()
        ]
    ).execute()


def cancel_delivery(
    mailbox: Mailbox, delivery_id: int | None, message_id: int | None, by: str, now: float
) -> set[str]:
    """A delivery not sent yet cancelled, a `delivery_cancelled` event, and the message's final
    status once nothing else is left (lifecycle.final_status). In the caller's transaction;
    returns the recipients to wake (a callback to post)."""
    if delivery_id is None or message_id is None:
        return set()
    changed = (
        Delivery.update(status="cancelled", updated_at=now)
        .where((Delivery.id == delivery_id) & Delivery.status.not_in(lifecycle.DELIVERY_FINAL))
        .execute()
    )
    if not changed:
        return set()
    MessageEvent.create(
        message=message_id,
        at=now,
        type="delivery_cancelled",
        detail={"delivery_id": delivery_id, "by": by, "via": "task"},
    )
    return finish_if_final(mailbox, message_id, now)
