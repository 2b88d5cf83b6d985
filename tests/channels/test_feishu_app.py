"""飞书自建应用: tenant token, text and card messages, codes on HTTP 400, token expiry."""

from __future__ import annotations

import json

import pytest
from fakes.app_services import FeishuAppFake
from fakes.channel_services import Reply

from messagepusher.actors.channels import build_channel

APP_ID, SECRET = "cli_a1b2c3d4e5f6a7b8", "feishu-app-secret-0123456789"
RECEIVERS = {"open_id": {"ou_7d8a6e6df7621556ce0d21922b676706"}, "chat_id": {"oc_group"}}
OPEN_ID = "ou_7d8a6e6df7621556ce0d21922b676706"


@pytest.fixture
def fake():
    with FeishuAppFake(APP_ID, SECRET, RECEIVERS) as fake:
        yield fake


def channel(fake, **extra):
    config = {
        "app_id": APP_ID,
        "app_secret": SECRET,
        "receive_id": OPEN_ID,
        "base_url": fake.url,
        **extra,
    }
    return build_channel("feishu_app", config)


def test_feishu_app_sends_text_with_the_tenant_token(db, fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "sent", result.detail
    assert result.remote_id == f"om_{1:032x}"
    assert fake.token_requests[0].json() == {"app_id": APP_ID, "app_secret": SECRET}
    (send,) = fake.sends
    assert send.query == {"receive_id_type": "open_id"}
    assert send.headers["authorization"] == "Bearer t-feishu-1"
    body = send.json()
    assert body["receive_id"] == OPEN_ID and body["msg_type"] == "text"
    assert json.loads(body["content"])["text"].startswith("磁盘告警 Disk alert\n\n服务器")


def test_markdown_goes_as_an_interactive_card_to_a_chat(db, fake, ctx, make_message) -> None:
    result = channel(fake, receive_id_type="chat_id", receive_id="oc_group").send(
        make_message(format="markdown", body="**粗体**"), ctx
    )
    assert result.status == "sent", result.detail
    body = fake.sends[0].json()
    assert body["msg_type"] == "interactive"
    card = json.loads(body["content"])
    assert card["header"]["title"]["content"] == "磁盘告警 Disk alert"
    assert card["elements"][0]["text"] == {"tag": "lark_md", "content": "**粗体**"}


def test_a_token_that_expired_mid_run_is_fetched_again_once_then_the_send_succeeds(
    db, fake, ctx, make_message
) -> None:
    assert channel(fake).send(make_message(), ctx).status == "sent"
    fake.tokens.expire_all()
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "sent", result.detail
    assert fake.tokens.fetches == 2
    assert [r.headers["authorization"] for r in fake.sends] == [
        "Bearer t-feishu-1",
        "Bearer t-feishu-1",
        "Bearer t-feishu-2",
    ]


def test_an_unreachable_user_is_permanent_although_feishu_answers_400_with_a_code(
    db, fake, ctx, make_message
) -> None:
    result = channel(fake, receive_id="ou_stranger").send(make_message(), ctx)
    assert result.status == "permanent" and result.response_code == 400
    assert "code=230013" in result.detail and "availability range" in result.detail


@pytest.mark.parametrize(
    ("extra", "code"),
    [({"app_id": "cli_wrong"}, 10003), ({"app_secret": "wrong-app-secret"}, 10014)],
)
def test_wrong_app_credentials_are_permanent(db, fake, ctx, make_message, extra, code) -> None:
    result = channel(fake, **extra).send(make_message(), ctx)
    assert result.status == "permanent" and f"code={code}" in result.detail
    assert result.detail.startswith("cannot get an access token")
    assert "wrong-app-secret" not in result.detail


def test_the_rate_limit_code_is_retried(db, fake, ctx, make_message) -> None:
    fake.script(Reply.json({"code": 99991400, "msg": "request trigger frequency limit"}, 429))
    result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.retry_after) == ("retry", 1.0)


def test_a_server_error_is_retried_and_honours_retry_after(db, fake, ctx, make_message) -> None:
    fake.script(Reply.json({"code": 1500, "msg": "internal error"}, 503, {"Retry-After": "7"}))
    result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.retry_after) == ("retry", 7.0)


def test_a_missing_permission_is_permanent_and_names_it(db, fake, ctx, make_message) -> None:
    fake.script(Reply.json({"code": 99991672, "msg": "Access denied"}, 400))
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "permanent" and "im:message" in result.detail


def test_receive_id_type_is_checked_at_creation() -> None:
    from messagepusher.actors.channels import ChannelConfigError

    with pytest.raises(ChannelConfigError) as caught:
        build_channel(
            "feishu_app",
            {"app_id": "a", "app_secret": "s", "receive_id": "x", "receive_id_type": "phone"},
        )
    assert caught.value.field == "config.receive_id_type"
