"""OneBot v11: send_msg to a friend or a group, the access token, and status/retcode classes."""

from __future__ import annotations

import pytest
from fakes.app_services import OneBotFake
from fakes.channel_services import Reply

from messagepusher.actors.channels import ChannelConfigError, build_channel

TOKEN = "onebot-access-token-42"
FRIEND, GROUP = 10001, 20002


@pytest.fixture
def fake():
    with OneBotFake(TOKEN, {FRIEND}, {GROUP}) as fake:
        yield fake


def channel(fake, **extra):
    config = {"base_url": fake.url, "access_token": TOKEN, **extra}
    if "group_id" not in extra:
        config.setdefault("user_id", FRIEND)
    return build_channel("onebot", config)


def test_onebot_sends_a_private_message_with_the_token(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "sent", result.detail
    assert result.remote_id == "1001"
    request = fake.requests[0]
    assert request.path == "/send_msg"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    body = request.json()
    assert (body["message_type"], body["user_id"], body["auto_escape"]) == ("private", FRIEND, True)
    assert body["message"].startswith("磁盘告警 Disk alert\n\n服务器")


def test_onebot_sends_to_a_group(fake, ctx, make_message) -> None:
    assert channel(fake, group_id=GROUP).send(make_message(), ctx).status == "sent"
    body = fake.requests[0].json()
    assert (body["message_type"], body["group_id"]) == ("group", GROUP)


def test_an_async_answer_counts_as_sent(fake, ctx, make_message) -> None:
    fake.script(Reply.json({"status": "async", "retcode": 1, "data": None}))
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "sent" and result.remote_id is None


def test_a_stranger_is_permanent_with_the_retcode(fake, ctx, make_message) -> None:
    result = channel(fake, user_id=99999).send(make_message(), ctx)
    assert result.status == "permanent"
    assert "retcode=100" in result.detail and "好友不存在" in result.detail


def test_a_failed_execution_is_retried(fake, ctx, make_message) -> None:
    fake.script(Reply.json({"status": "failed", "retcode": 103, "message": "发送失败"}))
    assert channel(fake).send(make_message(), ctx).status == "retry"


@pytest.mark.parametrize(
    ("token", "status", "hint"),
    [(None, 401, "wants access_token"), ("wrong-token-9", 403, "access_token is wrong")],
)
def test_a_missing_or_wrong_token_is_permanent(
    fake, ctx, make_message, token, status, hint
) -> None:
    result = channel(fake, access_token=token).send(make_message(), ctx)
    assert (result.status, result.response_code) == ("permanent", status)
    assert hint in result.detail


def test_a_wrong_base_url_is_permanent(fake, ctx, make_message) -> None:
    result = build_channel(
        "onebot", {"base_url": fake.url + "/nope", "access_token": TOKEN, "user_id": FRIEND}
    ).send(make_message(), ctx)
    assert result.status == "permanent" and "HTTP 404" in result.detail


def test_an_implementation_that_is_down_is_retried(ctx, make_message) -> None:
    with OneBotFake(TOKEN, {FRIEND}, set()) as gone:
        url = gone.url
    result = build_channel(
        "onebot", {"base_url": url, "access_token": TOKEN, "user_id": FRIEND}
    ).send(make_message(), ctx)
    assert result.status == "retry"


def test_a_server_error_is_retried(fake, ctx, make_message) -> None:
    fake.script(Reply(502, "bad gateway"))
    assert channel(fake).send(make_message(), ctx).status == "retry"


@pytest.mark.parametrize("targets", [{}, {"user_id": 1, "group_id": 2}])
def test_exactly_one_of_user_id_and_group_id_is_required(targets) -> None:
    with pytest.raises(ChannelConfigError) as caught:
        build_channel("onebot", {"base_url": "http://127.0.0.1:3000", **targets})
    assert "exactly one of user_id" in caught.value.message
