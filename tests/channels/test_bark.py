"""Bark: the push request, priority to interruption level, and the code classes."""

from __future__ import annotations

import pytest
from fakes.channel_services import BarkFake, Reply

from messagepusher.actors.channels import build_channel
from messagepusher.actors.channels.bark import level

DEVICE_KEY = "Qx7vL2mN8pR4sT6u"


@pytest.fixture
def fake():
    with BarkFake(DEVICE_KEY) as fake:
        yield fake


def channel(fake, **config):
    return build_channel("bark", {"device_key": DEVICE_KEY, "base_url": fake.url, **config})


def test_bark_posts_json_to_push_with_title_body_url_and_group(fake, ctx, make_message) -> None:
    result = channel(fake, group="ops", sound="minuet").send(
        make_message(url="https://example.com/x", priority=5), ctx
    )
    assert result.status == "sent"
    body = fake.requests[0].json()
    assert fake.requests[0].path == "/push"
    assert body["device_key"] == DEVICE_KEY
    assert body["title"] == "磁盘告警 Disk alert"
    assert body["body"].startswith("服务器 db-1")
    assert (body["url"], body["group"], body["sound"], body["level"]) == (
        "https://example.com/x",
        "ops",
        "minuet",
        "timeSensitive",
    )


@pytest.mark.parametrize(
    ("priority", "expected"),
    [(1, "passive"), (2, "active"), (3, "active"), (4, "active"), (5, "timeSensitive")],
)
def test_bark_level_follows_priority(priority: int, expected: str) -> None:
    assert level(priority) == expected


def test_bark_unknown_device_key_is_a_permanent_failure(ctx, make_message) -> None:
    with BarkFake("another-device") as fake:
        result = channel(fake).send(make_message(), ctx)
    assert result.status == "permanent"
    assert result.response_code == 400
    assert "device token" in result.detail


def test_bark_body_code_500_is_retried(fake, ctx, make_message) -> None:
    fake.script(Reply.json({"code": 500, "message": "push failed: apns timeout"}))
    assert channel(fake).send(make_message(), ctx).status == "retry"


def test_bark_body_code_other_than_200_on_http_200_is_permanent(fake, ctx, make_message) -> None:
    fake.script(Reply.json({"code": 400, "message": "device key is empty"}))
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "permanent"
    assert "device_key" in result.detail


def test_bark_long_body_is_truncated_to_fit_the_push_payload(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(body="推" * 3000), ctx)
    assert result.status == "sent"
    assert len(fake.requests[0].json()["body"].encode()) <= 3000
    assert result.notes
