"""Gotify: the message request with X-Gotify-Key, priority mapping, extras, and status classes."""

from __future__ import annotations

import pytest
from fakes.channel_services import GotifyFake

from messagepusher.actors.channels import ChannelConfigError, build_channel

TOKEN = "AbCdEf.123456789"


@pytest.fixture
def fake():
    with GotifyFake(TOKEN) as fake:
        yield fake


def channel(fake):
    return build_channel("gotify", {"token": TOKEN, "base_url": fake.url})


@pytest.mark.parametrize(("priority", "expected"), [(1, 1), (2, 3), (3, 5), (4, 8), (5, 10)])
def test_gotify_posts_the_message_with_the_priority_scaled_to_ten(
    fake, ctx, make_message, priority: int, expected: int
) -> None:
    result = channel(fake).send(make_message(priority=priority), ctx)
    assert result.status == "sent"
    request = fake.requests[0]
    assert (request.path, request.headers["x-gotify-key"]) == ("/message", TOKEN)
    body = request.json()
    assert (body["title"], body["priority"]) == ("磁盘告警 Disk alert", expected)
    assert body["message"].startswith("服务器 db-1")


def test_gotify_markdown_and_click_url_go_into_extras(fake, ctx, make_message) -> None:
    channel(fake).send(make_message(format="markdown", url="https://example.com/p"), ctx)
    assert fake.requests[0].json()["extras"] == {
        "client::display": {"contentType": "text/markdown"},
        "client::notification": {"click": {"url": "https://example.com/p"}},
    }


def test_gotify_rejected_token_is_a_permanent_failure(ctx, make_message) -> None:
    with GotifyFake("client-token") as fake:
        result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.response_code) == ("permanent", 401)
    assert "application token" in result.detail


def test_gotify_has_no_public_default_so_base_url_is_required() -> None:
    with pytest.raises(ChannelConfigError, match="config.base_url: is required for gotify"):
        build_channel("gotify", {"token": TOKEN})
