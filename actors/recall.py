"""Recall and edit of a message: cancel what is not sent yet, ask each channel about what is.

Channel calls run in the caller's thread (an HTTP worker); every outcome is a timeline event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from messagepusher.actors.channels import ChannelConfigError, build_channel
from messagepusher.actors.channels.base import ChangeResult, OutboundMessage, SendContext
from messagepusher.actors.channels.transport import Transport
from messagepusher.messages import store
from messagepusher.supervisor.models import Channel, Delivery, Message
from messagepusher.supervisor.timefmt import to_rfc3339

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

UNSENT = store.UNSENT


def change(
    runtime: Runtime,
    message: Message,
    action: str,
    by: str,
    title: str | None = None,
    body: str | None = None,
) -> dict[int, dict[str, Any]]:
    """Recall (action "recall") or edit ("edit") every delivery of `message`; the change per delivery id.

    A recall first cancels what is not sent yet. Sent deliveries are asked of their channel
    one by one (network I/O in the caller's thread); an edit also stores the new text on
    the message. Never raises for a channel's failure: it is that delivery's "failed".
    """
    now = runtime.clock.now()
    changes: dict[int, dict[str, Any]] = {}
    if action == "recall":
        unsent = [
            d.id
            for d in Delivery.select(Delivery.id).where(
                (Delivery.message == message.id) & Delivery.status.in_(UNSENT)
            )
        ]
        if unsent and store.cancel(runtime.mailbox, message.id, by, now):
            for delivery_id in unsent:
                changes[delivery_id] = view("recall", "recalled", "cancelled before it was sent")
    else:
        for d in Delivery.select(Delivery.id).where(
            (Delivery.message == message.id) & Delivery.status.in_(UNSENT)
        ):
            changes[d.id] = view("edit", "edited", "not sent yet: it goes out with the new text")
    new = OutboundMessage(
        id=message.id,
        title=message.title if title is None else title,
        body=message.body if body is None else body,
        format=message.format,
        url=message.url,
        priority=message.priority,
        created_at=to_rfc3339(message.created_at) or "",
    )
    sent = list(
        Delivery.select().where((Delivery.message == message.id) & (Delivery.status == "sent"))
    )
    transport = Transport(pool_size=1)
    try:
        for delivery in sent:
            result = _ask(runtime, delivery, action, new, transport)
            changes[delivery.id] = view(action, result.status, result.detail)
    finally:
        transport.close()
    for delivery in Delivery.select().where(Delivery.message == message.id):
        changes.setdefault(
            delivery.id, view(action, "not_supported", f"the delivery is {delivery.status}")
        )
    store.record_change(
        message.id,
        action,
        by,
        changes,
        now,
        (new.title, new.body) if action == "edit" else None,
    )
    return changes


def _ask(
    runtime: Runtime, delivery: Delivery, action: str, new: OutboundMessage, transport: Transport
) -> ChangeResult:
    row = Channel.get_or_none(Channel.id == delivery.channel_id) if delivery.channel_id else None
    if row is None:
        return ChangeResult("failed", "the channel was deleted; its credentials are gone")
    try:
        channel = build_channel(row.type, runtime.secretbox.decrypt(row.config))
    except ChannelConfigError as exc:
        return ChangeResult("failed", f"the channel's config is no longer valid: {exc}")
    settings = runtime.settings
    ctx = SendContext(
        delivery.id,
        transport,
        settings.channel_pool.timeout_seconds,
        settings.security.allow_private_networks,
        allowed_private_targets=tuple(settings.security.allowed_private_targets),
    )
    if action == "recall":
        return channel.recall(delivery.remote_id, ctx)
    return channel.edit(delivery.remote_id, new, ctx)


def view(action: str, status: str, detail: str = "") -> dict[str, Any]:
    return {"action": action, "status": status, "detail": detail}
