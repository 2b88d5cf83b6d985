"""企业微信应用消息: gettoken, text / markdown / textcard, recipients, errcode classes, token expiry."""

from __future__ import annotations

import pytest
from fakes.app_services import WeComAppFake
from fakes.channel_services import Reply

from messagepusher.actors.channels import build_channel

CORP, SECRET, AGENT = "ww1234567890abcdef", "agent-secret-0123456789abcdef", 1000002
USERS = ["ZhangSan", "LiSi", "WangWu"]


@pytest.fixture
def fake():
    with WeComAppFake(CORP, SECRET, AGENT, USERS) as fake:
        yield fake


def channel(fake, **extra):
    config = {
        "corp_id": CORP,
        "agent_id": AGENT,
        "agent_secret": SECRET,
        "base_url": fake.url,
        **extra,
    }
    return build_channel("wecom_app", config)


def test_wecom_app_sends_text_to_everyone_by_default(db, fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "sent", result.detail
    assert result.remote_id == "msgid-1"
    assert fake.token_requests[0].query == {"corpid": CORP, "corpsecret": SECRET}
    (send,) = fake.sends
    assert send.query == {"access_token": "wecom-token-1"}
    body = send.json()
    assert body["msgtype"] == "text" and body["agentid"] == AGENT
    assert (body["touser"], body["toparty"], body["totag"]) == ("@all", "", "")
    assert body["text"]["content"].startswith("磁盘告警 Disk alert\n\n服务器 db-1")


def test_markdown_goes_as_markdown_and_a_titled_link_as_a_textcard(
    db, fake, ctx, make_message
) -> None:
    assert (
        channel(fake).send(make_message(format="markdown", body="**粗体**"), ctx).status == "sent"
    )
    card = make_message(url="https://example.com/incident/7")
    assert channel(fake).send(card, ctx).status == "sent"
    markdown, textcard = (r.json() for r in fake.sends)
    assert markdown["msgtype"] == "markdown"
    assert markdown["markdown"]["content"] == "**磁盘告警 Disk alert**\n\n**粗体**"
    assert textcard["msgtype"] == "textcard"
    assert textcard["textcard"] == {
        "title": "磁盘告警 Disk alert",
        "description": "服务器 db-1 的磁盘使用率达到 91%。\nDisk usage on db-1 reached 91%.",
        "url": "https://example.com/incident/7",
    }


def test_configured_users_parties_and_tags_are_addressed(db, fake, ctx, make_message) -> None:
    result = channel(fake, to_user="ZhangSan|LiSi", to_party="2", to_tag="5").send(
        make_message(), ctx
    )
    assert result.status == "sent"
    body = fake.sends[0].json()
    assert (body["touser"], body["toparty"], body["totag"]) == ("ZhangSan|LiSi", "2", "5")


def test_the_message_recipients_replace_the_configured_ones(db, fake, ctx, make_message) -> None:
    result = channel(fake, to_user="ZhangSan", to_party="2").send(
        make_message(recipients=("LiSi", "WangWu")), ctx
    )
    assert result.status == "sent"
    body = fake.sends[0].json()
    assert body["touser"] == "LiSi|WangWu" and "toparty" not in body


def test_recipients_wecom_skipped_are_noted_on_a_sent_message(db, fake, ctx, make_message) -> None:
    result = channel(fake, to_user="ZhangSan|Nobody").send(make_message(), ctx)
    assert result.status == "sent"
    assert "WeCom skipped these users: Nobody" in result.notes


def test_no_valid_recipient_at_all_is_permanent(db, fake, ctx, make_message) -> None:
    result = channel(fake, to_user="Nobody").send(make_message(), ctx)
    assert result.status == "permanent" and "errcode=81013" in result.detail


def test_a_token_that_expired_mid_run_is_fetched_again_once_then_the_send_succeeds(
    db, fake, ctx, make_message
) -> None:
    assert channel(fake).send(make_message(), ctx).status == "sent"
    fake.tokens.expire_all()
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "sent", result.detail
    assert fake.tokens.fetches == 2
    assert [r.query["access_token"] for r in fake.sends] == [
        "wecom-token-1",
        "wecom-token-1",
        "wecom-token-2",
    ]


def test_an_invalid_token_is_fetched_again_once(db, fake, ctx, make_message) -> None:
    fake.script(Reply.json({"errcode": 40014, "errmsg": "invalid access_token"}))
    assert channel(fake).send(make_message(), ctx).status == "sent"
    assert fake.tokens.fetches == 2


@pytest.mark.parametrize(
    ("extra", "errcode"),
    [({"corp_id": "ww-wrong"}, 40013), ({"agent_secret": "wrong-agent-secret"}, 40001)],
)
def test_a_wrong_corp_id_or_secret_is_permanent(
    db, fake, ctx, make_message, extra, errcode
) -> None:
    result = channel(fake, **extra).send(make_message(), ctx)
    assert result.status == "permanent" and f"errcode={errcode}" in result.detail
    assert "wrong-agent-secret" not in result.detail


def test_a_wrong_agent_id_is_permanent(db, fake, ctx, make_message) -> None:
    result = channel(fake, agent_id=1000099).send(make_message(), ctx)
    assert result.status == "permanent" and "errcode=40056" in result.detail


@pytest.mark.parametrize(("errcode", "retry_after"), [(-1, None), (45009, 60.0), (45033, 10.0)])
def test_busy_rate_and_concurrency_limits_are_retried(
    db, fake, ctx, make_message, errcode, retry_after
) -> None:
    fake.script(Reply.json({"errcode": errcode, "errmsg": "later"}))
    result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.retry_after) == ("retry", retry_after)


def test_ip_not_trusted_is_permanent_with_the_fix(db, fake, ctx, make_message) -> None:
    fake.script(Reply.json({"errcode": 60020, "errmsg": "not allow to access from your ip"}))
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "permanent" and "trusted IPs" in result.detail


def test_long_text_is_truncated_to_2048_bytes(db, fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(body="长" * 3000), ctx)
    assert result.status == "sent", result.detail  # the fake refuses content over 2048 bytes
    assert len(fake.sends[0].json()["text"]["content"].encode()) <= 2048
    assert any("truncated" in note for note in result.notes)
