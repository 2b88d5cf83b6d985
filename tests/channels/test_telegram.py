"""Telegram: sendMessage with HTML, splitting at 4096, and the ok/error_code classes."""

from __future__ import annotations

import pytest
from fakes.channel_services import Reply, TelegramFake

from messagepusher.actors.channels import build_channel
from messagepusher.actors.channels.http_common import Answer
from messagepusher.actors.channels.telegram import classify_answer

BOT_TOKEN = "7012345678:AAF-k3yz0123456789abcdefghijklmnopq"
CHAT_ID = "-1001234567890"


@pytest.fixture
def fake():
    with TelegramFake(BOT_TOKEN, CHAT_ID) as fake:
        yield fake


def channel(fake, **config):
    return build_channel(
        "telegram", {"bot_token": BOT_TOKEN, "chat_id": CHAT_ID, "base_url": fake.url, **config}
    )


def test_telegram_sends_html_with_a_bold_title_and_escaped_text(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(body="a < b & c > d"), ctx)
    assert result.status == "sent", result.detail
    request = fake.requests[0]
    assert request.path == f"/bot{BOT_TOKEN}/sendMessage"
    body = request.json()
    assert body["chat_id"] == CHAT_ID
    assert body["parse_mode"] == "HTML"
    assert body["text"] == "<b>磁盘告警 Disk alert</b>\n\na &lt; b &amp; c &gt; d"
    assert result.parts == 1


def test_telegram_long_message_is_split_into_several_sendmessage_calls(
    fake, ctx, make_message
) -> None:
    body = "\n".join(f"第 {n} 行 <日志> line {n}" for n in range(800))
    result = channel(fake).send(make_message(title="", body=body), ctx)
    assert result.status == "sent", result.detail
    assert result.parts == len(fake.requests) > 1
    assert all(len(text) <= 4096 for text in fake.texts)  # checked after entity parsing
    assert "\n".join(fake.texts) == body
    assert any("split into" in note for note in result.notes)


def test_telegram_low_priority_is_sent_silently(fake, ctx, make_message) -> None:
    channel(fake, message_thread_id=7).send(make_message(priority=1), ctx)
    body = fake.requests[0].json()
    assert body["disable_notification"] is True
    assert body["message_thread_id"] == 7


def test_telegram_unknown_chat_is_a_permanent_failure(ctx, make_message) -> None:
    with TelegramFake(BOT_TOKEN, "42") as fake:
        result = channel(fake).send(make_message(), ctx)
    assert result.status == "permanent"
    assert "chat not found" in result.detail and "chat_id" in result.detail


def test_telegram_bad_token_is_a_permanent_failure(ctx, make_message) -> None:
    with TelegramFake("1:other", CHAT_ID) as fake:
        result = channel(fake).send(make_message(), ctx)
    assert result.status == "permanent"
    assert result.response_code == 401
    assert BOT_TOKEN not in result.detail


def test_telegram_429_waits_the_retry_after_from_parameters(fake, ctx, make_message) -> None:
    fake.script(
        Reply.json(
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 35",
                "parameters": {"retry_after": 35},
            },
            429,
        )
    )
    result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.retry_after) == ("retry", 35.0)


def test_telegram_failure_in_a_later_part_says_which_parts_were_sent(
    fake, ctx, make_message
) -> None:
    fake.script(Reply.json({"ok": True, "result": {}}), Reply(502, "Bad Gateway"))
    result = channel(fake).send(make_message(body="x" * 9000), ctx)
    assert result.status == "retry"
    assert len(fake.requests) == 2
    assert result.notes == ["part 2 of 3 failed; parts 1–1 were sent"]


def test_telegram_group_upgraded_to_supergroup_names_the_new_chat_id() -> None:
    answer = Answer(
        400,
        '{"ok": false, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat",'
        ' "parameters": {"migrate_to_chat_id": -1009876543210}}',
    )
    result = classify_answer(answer, 0.0)
    assert result.status == "permanent"
    assert "set chat_id to -1009876543210" in result.detail
