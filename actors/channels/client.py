"""The client channel: the user's own devices, which follow the inbox over Server-Sent Events.

A send stores the message in the user's inbox and is `sent` once stored; devices read it from there.
A recall empties and hides the stored item, an edit rewrites its title and body.
"""

from __future__ import annotations

import peewee

from messagepusher.actors.channels.base import (
    ChangeResult,
    Channel,
    ChannelConfig,
    OutboundMessage,
    SendContext,
    SendResult,
    register,
)
from messagepusher.messages import inbox

TEST_NOTE = "a channel test is not stored in the inbox; send a message to see it on your devices"


class ClientConfig(ChannelConfig):
    """No settings: devices subscribe with an API key of the channel's owner."""


def store_in_inbox(delivery_id: int, now: float) -> SendResult:
    """Sent once the delivery's message is in the owner's inbox; permanent if the delivery is gone."""
    if delivery_id == 0:
        return SendResult.sent(notes=[TEST_NOTE])
    item_id = inbox.store(delivery_id, now)
    if item_id is None:
        return SendResult.permanent("the delivery no longer exists (its message was deleted)")
    return SendResult.sent(response=f"inbox item {item_id}")


@register
class ClientChannel(Channel):
    """Runs in a channel-pool worker thread; a database error escapes and the pool retries."""

    type_name = "client"
    Config = ClientConfig

    def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        return store_in_inbox(ctx.delivery_id, self.now())

    def recall(self, remote_id: str | None, ctx: SendContext) -> ChangeResult:
        """Recall the delivery's inbox item: emptied, and no longer listed or streamed.

        Runs in an HTTP worker thread; never raises (a database error is "failed"). Devices
        that already received the item over the stream are not told.
        """
        try:
            removed = inbox.remove(ctx.delivery_id, self.now())
        except peewee.DatabaseError as exc:
            return ChangeResult("failed", f"the inbox could not be changed: {exc}")
        if removed:
            return ChangeResult("recalled")
        return ChangeResult("failed", "the inbox item is already gone (recalled before)")

    def edit(
        self, remote_id: str | None, message: OutboundMessage, ctx: SendContext
    ) -> ChangeResult:
        """Rewrite the inbox item's title and body (HTTP worker thread); never raises."""
        try:
            rewritten = inbox.rewrite(ctx.delivery_id, message.title, message.body)
        except peewee.DatabaseError as exc:
            return ChangeResult("failed", f"the inbox could not be changed: {exc}")
        if rewritten:
            return ChangeResult("edited")
        return ChangeResult("failed", "the inbox item is gone (recalled before)")
