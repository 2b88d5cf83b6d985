"""Feishu and Lark: the signed robot request checked by the published algorithm, and code classes."""

from __future__ import annotations

import json
import time

import pytest
from fakes.channel_services import FeishuFake, Reply, feishu_sign

from messagepusher.actors.channels import build_channel
from messagepusher.actors.channels.feishu import FeishuChannel, build_call, classify_answer
from messagepusher.actors.channels.http_common import Answer

TOKEN = "2f1a5b3c-9d8e-4f70-a6b5-c4d3e2f1a0b9"
SECRET = "mZ3vKp9QxL2wR8tY"


@pytest.fixture
def fake():
    with FeishuFake(TOKEN, SECRET) as fake:
        yield fake


def channel(fake, now=time.time, type_name="feishu", **config):
    built = build_channel(
        type_name, {"token": TOKEN, "secret": SECRET, "base_url": fake.url, **config}
    )
    return type(built)(built.config, now=now)


def test_feishu_signed_text_passes_the_published_signature_check(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "sent", result.detail
    assert fake.problems == []
    body = fake.requests[0].json()
    assert body["msg_type"] == "text"
    assert body["content"]["text"].startswith("磁盘告警 Disk alert")


def test_feishu_signature_uses_seconds_and_an_empty_message(make_message) -> None:
    config = build_channel("feishu", {"token": TOKEN, "secret": SECRET}).config
    call, _ = build_call(make_message(), config, now=1_700_000_000.9)
    body = json.loads(call.body)
    assert body["timestamp"] == "1700000000"
    assert body["sign"] == feishu_sign(SECRET, "1700000000")


def test_feishu_and_lark_default_to_their_own_hosts() -> None:
    assert build_channel("feishu", {"token": TOKEN}).config.base_url == "https://open.feishu.cn"
    assert build_channel("lark", {"token": TOKEN}).config.base_url == "https://open.larksuite.com"


def test_lark_sends_through_the_same_robot_protocol(fake, ctx, make_message) -> None:
    result = channel(fake, type_name="lark").send(make_message(), ctx)
    assert result.status == "sent"
    assert fake.requests[0].path == f"/open-apis/bot/v2/hook/{TOKEN}"


def test_feishu_markdown_message_is_an_interactive_card(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(format="markdown", body="**重要** 内容"), ctx)
    assert result.status == "sent"
    card = fake.requests[0].json()["card"]
    assert card["header"]["title"]["content"] == "磁盘告警 Disk alert"
    assert card["elements"][0]["text"] == {"tag": "lark_md", "content": "**重要** 内容"}


def test_feishu_stale_timestamp_is_a_permanent_sign_failure(fake, ctx, make_message) -> None:
    result = channel(fake, now=lambda: time.time() + 3 * 3600).send(make_message(), ctx)
    assert result.status == "permanent"
    assert "code=19021" in result.detail and "clock" in result.detail


def test_feishu_wrong_token_is_a_permanent_failure(ctx, make_message) -> None:
    with FeishuFake("other-token") as fake:
        result = build_channel("feishu", {"token": TOKEN, "base_url": fake.url}).send(
            make_message(), ctx
        )
    assert result.status == "permanent"
    assert "code=19001" in result.detail


@pytest.mark.parametrize("code", [9499, 11232])
def test_feishu_rate_limit_codes_are_retried(fake, ctx, make_message, code: int) -> None:
    fake.script(Reply.json({"code": code, "msg": "too many request", "data": {}}))
    result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.retry_after) == ("retry", 60.0)


@pytest.mark.parametrize(
    ("code", "msg"), [(19022, "Ip Not Allowed"), (19024, "Key Words Not Found")]
)
def test_feishu_ip_not_allowed_and_keyword_not_found_are_permanent_and_name_the_code(
    fake, ctx, make_message, code: int, msg: str
) -> None:
    fake.script(Reply.json({"code": code, "msg": msg, "data": {}}))
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "permanent"
    assert str(code) in result.detail and msg in result.detail


def test_feishu_legacy_statuscode_answer_is_understood() -> None:
    ok = Answer(200, '{"Extra": null, "StatusCode": 0, "StatusMessage": "success"}')
    bad = Answer(200, '{"Extra": null, "StatusCode": 19021, "StatusMessage": "sign match fail"}')
    assert classify_answer(ok, 0.0).status == "sent"
    assert classify_answer(bad, 0.0).status == "permanent"


def test_feishu_without_secret_sends_no_signature(ctx, make_message) -> None:
    with FeishuFake(TOKEN) as fake:
        result = FeishuChannel(
            build_channel("feishu", {"token": TOKEN, "base_url": fake.url}).config
        ).send(make_message(), ctx)
    assert result.status == "sent"
    assert "sign" not in fake.requests[0].json()
