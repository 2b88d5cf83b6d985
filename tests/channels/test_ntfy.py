"""ntfy: the JSON publish, priority, token, tags, and the 4096-byte message limit."""

from __future__ import annotations

import pytest
from fakes.channel_services import NtfyFake

from messagepusher.actors.channels import ChannelConfigError, build_channel

TOKEN = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"


@pytest.fixture
def fake():
    with NtfyFake("mp-alerts", TOKEN) as fake:
        yield fake


def channel(fake, **config):
    return build_channel(
        "ntfy", {"topic": "mp-alerts", "token": TOKEN, "base_url": fake.url, **config}
    )


@pytest.mark.parametrize("priority", [1, 2, 3, 4, 5])
def test_ntfy_publishes_json_with_the_priority_mapped_directly(
    fake, ctx, make_message, priority: int
) -> None:
    result = channel(fake).send(make_message(priority=priority, url="https://example.com/d"), ctx)
    assert result.status == "sent"
    request = fake.requests[0]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    body = request.json()
    assert (body["topic"], body["priority"], body["title"], body["click"]) == (
        "mp-alerts",
        priority,
        "磁盘告警 Disk alert",
        "https://example.com/d",
    )


def test_ntfy_carries_classification_tags_and_the_markdown_flag(fake, ctx, make_message) -> None:
    message = make_message(
        format="markdown",
        ai={"task": "classify", "result": {"label": "ops", "tags": ["warning", "disk"]}},
    )
    channel(fake).send(message, ctx)
    body = fake.requests[0].json()
    assert body["tags"] == ["warning", "disk"]
    assert body["markdown"] is True


def test_ntfy_wrong_token_is_a_permanent_failure(ctx, make_message) -> None:
    with NtfyFake("mp-alerts", "tk_other") as fake:
        result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.response_code) == ("permanent", 401)
    assert "token" in result.detail


def test_ntfy_message_is_truncated_to_4096_bytes(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(body="通知" * 3000), ctx)
    assert result.status == "sent", result.detail
    assert len(fake.requests[0].json()["message"].encode()) <= 4096


def test_ntfy_topic_names_are_checked() -> None:
    with pytest.raises(ChannelConfigError, match="config.topic: must be 1–64 letters"):
        build_channel("ntfy", {"topic": "has space"})
