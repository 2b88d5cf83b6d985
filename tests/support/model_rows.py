"""Rows made and read straight through the models, for tests that drive the store in-process."""

from __future__ import annotations

from typing import Any

from messagepusher.supervisor.models import Channel, MessageEvent, User
from messagepusher.supervisor.runtime import Runtime


def webhook_channel(
    runtime: Runtime, user: User, name: str, url: str, at: float, **fields: Any
) -> Channel:
    """A webhook channel of `user` to `url`, its config sealed by the runtime's secretbox."""
    return Channel.create(
        user=user,
        name=name,
        type="webhook",
        config=runtime.secretbox.encrypt({"url": url}),
        created_at=at,
        updated_at=at,
        **fields,
    )


def event_types(message_id: int) -> list[str]:
    """The types of the message's timeline events, oldest first."""
    return [
        e.type
        for e in MessageEvent.select()
        .where(MessageEvent.message == message_id)
        .order_by(MessageEvent.id)
    ]
