"""Discord: the webhook request, the 2000-character limit, and 429's retry_after."""

from __future__ import annotations

import pytest
from fakes.channel_services import DiscordFake, Reply

from messagepusher.actors.channels import build_channel


@pytest.fixture
def fake():
    with DiscordFake("1234567890", "dc-webhook-token") as fake:
        yield fake


def channel(fake, **config):
    return build_channel(
        "discord", {"url": f"{fake.url}/api/webhooks/1234567890/dc-webhook-token", **config}
    )


def test_discord_posts_markdown_content_without_pings_and_204_is_sent(
    fake, ctx, make_message
) -> None:
    result = channel(fake, username="MessagePusher").send(make_message(body="@everyone look"), ctx)
    assert (result.status, result.response_code) == ("sent", 204)
    body = fake.requests[0].json()
    assert body["content"].startswith("**磁盘告警 Disk alert**\n\n@everyone look")
    assert body["allowed_mentions"] == {"parse": []}
    assert body["username"] == "MessagePusher"


def test_discord_content_is_truncated_to_2000_characters_and_noted(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(body="字" * 5000), ctx)
    assert result.status == "sent", result.detail
    assert len(fake.requests[0].json()["content"]) == 2000
    assert result.notes == ["content truncated from 5021 to 2000 characters (the service's limit)"]


def test_discord_429_waits_the_float_retry_after_of_the_body(fake, ctx, make_message) -> None:
    fake.script(
        Reply.json(
            {"message": "You are being rate limited.", "retry_after": 1.25, "global": False}, 429
        )
    )
    result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.retry_after) == ("retry", 1.25)


def test_discord_unknown_webhook_is_a_permanent_failure(ctx, make_message) -> None:
    with DiscordFake("1234567890", "deleted") as fake:
        result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.response_code) == ("permanent", 404)
    assert "check url" in result.detail
