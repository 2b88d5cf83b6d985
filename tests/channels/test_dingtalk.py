"""DingTalk: the signed robot request checked by the published algorithm, and errcode classes."""

from __future__ import annotations

import time
from urllib.parse import quote_plus

import pytest
from fakes.channel_services import DingTalkFake, Reply, dingtalk_sign

from messagepusher.actors.channels import build_channel
from messagepusher.actors.channels.dingtalk import DingTalkChannel, build_call

TOKEN = "b0b4f0c8d2e64b8c9d1e"
SECRET = "SEC1f2e3d4c5b6a79880a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5"


@pytest.fixture
def fake():
    with DingTalkFake(TOKEN, SECRET) as fake:
        yield fake


def channel(fake, now=time.time, **config):
    built = build_channel(
        "dingtalk", {"access_token": TOKEN, "secret": SECRET, "base_url": fake.url, **config}
    )
    return DingTalkChannel(built.config, now=now)


def test_dingtalk_signed_request_passes_the_published_signature_check(
    fake, ctx, make_message
) -> None:
    result = channel(fake, at_mobiles=["13800000000"]).send(make_message(), ctx)
    assert result.status == "sent", result.detail
    assert fake.problems == []
    request = fake.requests[0]
    assert request.path == "/robot/send"
    assert set(request.query) == {"access_token", "timestamp", "sign"}
    body = request.json()
    assert body["msgtype"] == "text"
    assert body["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}


def test_dingtalk_signature_uses_milliseconds_and_is_url_encoded(make_message) -> None:
    config = build_channel("dingtalk", {"access_token": TOKEN, "secret": SECRET}).config
    call, _ = build_call(make_message(), config, now=1_700_000_000.123)
    assert "timestamp=1700000000123&" in call.url
    assert call.url.endswith("&sign=" + quote_plus(dingtalk_sign(SECRET, "1700000000123")))


def test_dingtalk_timestamp_two_hours_off_is_refused_as_permanent(fake, ctx, make_message) -> None:
    result = channel(fake, now=lambda: time.time() - 7200).send(make_message(), ctx)
    assert result.status == "permanent"
    assert "310000" in result.detail and "clock" in result.detail
    assert fake.problems[0].startswith("timestamp 7")


def test_dingtalk_wrong_secret_is_permanent_naming_the_security_settings(
    fake, ctx, make_message
) -> None:
    result = channel(fake, secret="SECwrong").send(make_message(), ctx)
    assert result.status == "permanent"
    assert "security settings" in result.detail
    assert fake.problems == ["sign mismatch"]


def test_dingtalk_unknown_token_errcode_is_a_permanent_failure(fake, ctx, make_message) -> None:
    result = channel(fake, access_token="nope").send(make_message(), ctx)
    assert result.status == "permanent"
    assert "errcode=300001" in result.detail


def test_dingtalk_send_too_fast_errcode_130101_is_retried_after_the_ten_minute_throttle(
    fake, ctx, make_message
) -> None:
    fake.script(
        Reply.json({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
    )
    result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.retry_after) == ("retry", 600.0)


def test_dingtalk_markdown_message_carries_a_title(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(format="markdown", title="", body="# 标题\n正文"), ctx)
    assert result.status == "sent"
    body = fake.requests[0].json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "# 标题"
    assert body["markdown"]["text"] == "# 标题\n正文"


def test_dingtalk_without_secret_sends_no_signature(ctx, make_message) -> None:
    with DingTalkFake(TOKEN) as fake:
        result = build_channel("dingtalk", {"access_token": TOKEN, "base_url": fake.url}).send(
            make_message(), ctx
        )
    assert result.status == "sent"
    assert fake.requests[0].query == {"access_token": TOKEN}


def test_dingtalk_content_is_truncated_to_20000_bytes(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(body="钉" * 10000), ctx)
    assert result.status == "sent"
    assert len(fake.requests[0].json()["text"]["content"].encode()) <= 20000
    assert result.notes
