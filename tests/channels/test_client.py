"""The client and none channels: a send stores the message in the owner's inbox, once."""

from __future__ import annotations

import dataclasses

from messagepusher.actors.channels import build_channel
from messagepusher.messages import inbox
from messagepusher.supervisor.models import Channel, Delivery, InboxItem, Message, User


def delivery(type_name: str) -> Delivery:
    user = User.create(username=f"u-{type_name}", password_hash="x", created_at=1, updated_at=1)
    channel = Channel.create(
        user=user, name="phone", type=type_name, config="", created_at=1, updated_at=1
    )
    message = Message.create(
        user=user, title="hello", body="world", status="sending", accepted_status="accepted",
        created_at=1, updated_at=1,
    )  # fmt: skip
    return Delivery.create(
        message=message, channel=channel, channel_name="phone", channel_type=type_name,
        created_at=1, updated_at=1,
    )  # fmt: skip


def test_a_send_stores_the_message_once_even_when_the_send_is_replayed(db, ctx, make_message):
    row = delivery("client")
    channel = build_channel("client", {})
    replay = dataclasses.replace(ctx, delivery_id=row.id)
    first = channel.send(make_message(), replay)
    second = channel.send(make_message(), replay)
    assert (first.status, second.status) == ("sent", "sent")
    (item,) = InboxItem.select()
    assert (item.user_id, item.message_id, item.title, item.body) == (
        row.message.user_id, row.message_id, "hello", "world",
    )  # fmt: skip
    assert item.channel_type == "client" and first.response == f"inbox item {item.id}"
    assert [r.id for r in inbox.streamed_after(item.user_id, 0)] == [item.id]


def test_a_none_channel_stores_but_its_row_is_never_streamed(db, ctx, make_message):
    row = delivery("none")
    result = build_channel("none", {}).send(
        make_message(), dataclasses.replace(ctx, delivery_id=row.id)
    )
    assert result.status == "sent"
    (item,) = InboxItem.select()
    assert item.channel_type == "none"
    assert inbox.streamed_after(item.user_id, 0) == []


def test_a_deleted_message_is_a_permanent_failure_and_a_test_send_stores_nothing(
    db, ctx, make_message
):
    channel = build_channel("client", {})
    gone = channel.send(make_message(), dataclasses.replace(ctx, delivery_id=999))
    assert gone.status == "permanent" and "no longer exists" in gone.detail
    test = channel.send(make_message(), dataclasses.replace(ctx, delivery_id=0))
    assert test.status == "sent" and "not stored" in test.notes[0]
    assert InboxItem.select().count() == 0
