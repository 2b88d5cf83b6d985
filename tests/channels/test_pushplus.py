"""PushPlus: the JSON request, templates, and code classes."""

from __future__ import annotations

import pytest
from fakes.channel_services import PushPlusFake, Reply

from messagepusher.actors.channels import build_channel

TOKEN = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


@pytest.fixture
def fake():
    with PushPlusFake(TOKEN) as fake:
        yield fake


def channel(fake, **config):
    return build_channel("pushplus", {"token": TOKEN, "base_url": fake.url, **config})


def test_pushplus_posts_token_title_content_and_template(fake, ctx, make_message) -> None:
    result = channel(fake, topic="ops").send(make_message(), ctx)
    assert result.status == "sent"
    body = fake.requests[0].json()
    assert fake.requests[0].path == "/send"
    assert (body["token"], body["title"], body["template"], body["topic"]) == (
        TOKEN,
        "磁盘告警 Disk alert",
        "txt",
        "ops",
    )
    assert body["content"].startswith("服务器 db-1")


def test_pushplus_markdown_uses_the_markdown_template(fake, ctx, make_message) -> None:
    channel(fake).send(make_message(format="markdown"), ctx)
    assert fake.requests[0].json()["template"] == "markdown"


def test_pushplus_invalid_token_code_903_is_a_permanent_failure(ctx, make_message) -> None:
    with PushPlusFake("another") as fake:
        result = channel(fake).send(make_message(), ctx)
    assert result.status == "permanent"
    assert "code=903" in result.detail and "token" in result.detail


def test_pushplus_server_error_code_999_is_retried(fake, ctx, make_message) -> None:
    fake.script(Reply.json({"code": 999, "msg": "服务端异常", "data": None}))
    assert channel(fake).send(make_message(), ctx).status == "retry"
