"""WeCom: the robot request, errcode classification, and the 2048-byte text limit."""

from __future__ import annotations

import pytest
from fakes.channel_services import Reply, WeComFake

from messagepusher.actors.channels import build_channel

KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"


@pytest.fixture
def fake():
    with WeComFake(KEY) as fake:
        yield fake


def channel(fake, **extra):
    return build_channel("wecom", {"key": KEY, "base_url": fake.url, **extra})


def test_wecom_sends_text_with_the_key_in_the_query(fake, ctx, make_message) -> None:
    result = channel(fake, mentioned_list=["@all"]).send(make_message(), ctx)
    assert result.status == "sent"
    request = fake.requests[0]
    assert (request.path, request.query) == ("/cgi-bin/webhook/send", {"key": KEY})
    body = request.json()
    assert body["msgtype"] == "text"
    assert body["text"]["content"].startswith("磁盘告警 Disk alert\n\n服务器 db-1")
    assert body["text"]["mentioned_list"] == ["@all"]


def test_wecom_markdown_message_is_sent_as_msgtype_markdown(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(format="markdown", body="**粗体** and `code`"), ctx)
    assert result.status == "sent"
    assert fake.requests[0].json() == {
        "msgtype": "markdown",
        "markdown": {"content": "**磁盘告警 Disk alert**\n\n**粗体** and `code`"},
    }


def test_wecom_body_errcode_is_a_permanent_failure(ctx, make_message) -> None:
    with WeComFake("another-key") as fake:
        result = channel(fake).send(make_message(), ctx)
    assert result.status == "permanent"
    assert result.response_code == 200
    assert "errcode=93000" in result.detail and "copy key=" in result.detail


def test_wecom_rate_limit_errcode_45009_is_retried_after_a_minute(fake, ctx, make_message) -> None:
    fake.script(Reply.json({"errcode": 45009, "errmsg": "api freq out of limit"}))
    result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.retry_after) == ("retry", 60.0)


def test_wecom_long_chinese_text_is_truncated_to_2048_utf8_bytes(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(body="长" * 5000), ctx)
    assert result.status == "sent", result.detail  # the fake refuses content over 2048 bytes
    content = fake.requests[0].json()["text"]["content"]
    assert len(content.encode()) <= 2048
    assert content.endswith("…")
    assert any("truncated" in note and "2048 bytes" in note for note in result.notes)


def test_wecom_markdown_may_use_4096_bytes(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(format="markdown", body="长" * 5000), ctx)
    assert result.status == "sent"
    assert 4090 <= len(fake.requests[0].json()["markdown"]["content"].encode()) <= 4096
