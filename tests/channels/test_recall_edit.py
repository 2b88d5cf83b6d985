"""Recall and edit per channel type, against the fakes: the ids kept at send, the calls made with them."""

from __future__ import annotations

import pytest
from fakes.recall_services import DiscordRecallFake, TelegramRecallFake

from messagepusher.actors.channels import build_channel
from messagepusher.actors.channels.gotify import classify_answer as gotify_answer
from messagepusher.actors.channels.http_common import Answer
from messagepusher.actors.channels.ntfy import classify_answer as ntfy_answer

BOT_TOKEN = "7012345678:AAF-recall"
CHAT_ID = "-1001"


@pytest.fixture
def telegram():
    with TelegramRecallFake(BOT_TOKEN, CHAT_ID) as fake:
        yield fake


@pytest.fixture
def discord():
    with DiscordRecallFake("7", "tok") as fake:
        yield fake


def tg(fake):
    return build_channel(
        "telegram", {"bot_token": BOT_TOKEN, "chat_id": CHAT_ID, "base_url": fake.url}
    )


def test_a_split_telegram_message_keeps_every_part_id_and_recall_deletes_them_all(
    telegram, ctx, make_message
):
    sent = tg(telegram).send(make_message(body="x" * 5000), ctx)
    assert sent.status == "sent" and sent.parts == 2
    assert sent.remote_id == "100,101"
    assert tg(telegram).recall(sent.remote_id, ctx).status == "recalled"
    assert telegram.deleted == [100, 101] and telegram.problems == []


def test_telegram_edits_a_one_part_message_and_refuses_to_edit_a_split_one(
    telegram, ctx, make_message
):
    one = tg(telegram).send(make_message(body="short"), ctx)
    edited = tg(telegram).edit(one.remote_id, make_message(body="shorter"), ctx)
    assert edited.status == "edited" and telegram.edited[0][0] == int(one.remote_id)
    too_long = tg(telegram).edit(one.remote_id, make_message(body="y" * 5000), ctx)
    assert too_long.status == "not_supported" and "one message at a time" in too_long.detail
    assert len(telegram.edited) == 1


def test_telegram_without_a_kept_id_cannot_recall(ctx):
    channel = build_channel("telegram", {"bot_token": BOT_TOKEN, "chat_id": CHAT_ID})
    result = channel.recall(None, ctx)
    assert result.status == "not_supported" and "message_id" in result.detail


def test_discord_keeps_the_id_of_wait_true_and_deletes_and_edits_by_it(discord, ctx, make_message):
    channel = build_channel("discord", {"url": f"{discord.url}/api/webhooks/7/tok"})
    sent = channel.send(make_message(), ctx)
    assert sent.status == "sent" and sent.remote_id in discord.sent
    assert discord.requests[0].query == {"wait": "true"}
    assert channel.edit(sent.remote_id, make_message(body="new"), ctx).status == "edited"
    assert discord.edited[0][0] == sent.remote_id and "new" in discord.edited[0][1]
    assert channel.recall(sent.remote_id, ctx).status == "recalled"
    gone = channel.recall(sent.remote_id, ctx)
    assert gone.status == "failed" and "404" in gone.detail


@pytest.mark.parametrize(
    ("answer", "body", "remote_id"),
    [
        (ntfy_answer, '{"id": "sPs9kJQjB4Ux", "event": "message"}', "sPs9kJQjB4Ux"),
        (gotify_answer, '{"id": 25, "appid": 5}', "25"),
    ],
)
def test_ntfy_and_gotify_keep_the_id_they_answer(answer, body, remote_id):
    assert answer(Answer(200, body), 0.0).remote_id == remote_id


@pytest.mark.parametrize(
    ("type_name", "config", "why"),
    [
        ("slack", {"url": "https://hooks.slack.com/services/T0/B0/x"}, "bot token"),
        ("gotify", {"base_url": "https://push.example.org", "token": "AbCdEf123"}, "client token"),
        ("ntfy", {"topic": "alerts"}, "no delete"),
        ("webhook", {"url": "https://example.org/in"}, "cannot take back"),
    ],
)
def test_channels_that_cannot_recall_say_not_supported_and_why(type_name, config, why, ctx):
    result = build_channel(type_name, config).recall("1", ctx)
    assert result.status == "not_supported" and why in result.detail
