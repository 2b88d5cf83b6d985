"""Recall and edit of the app channels against their fakes: WeCom app message/recall, Feishu app
message delete, text edit (PUT) and card update (PATCH), each with the id the fake gave at send."""

from __future__ import annotations

import pytest
from fakes.app_services import FeishuAppFake, WeComAppFake

from messagepusher.actors.channels import build_channel

CORP, SECRET, AGENT = "ww1234567890abcdef", "agent-secret-0123456789abcdef", 1000002
APP_ID, APP_SECRET = "cli_a1b2c3d4e5f6a7b8", "feishu-app-secret-0123456789"
OPEN_ID = "ou_7d8a6e6df7621556ce0d21922b676706"


@pytest.fixture
def wecom():
    with WeComAppFake(CORP, SECRET, AGENT, ["ZhangSan"]) as fake:
        yield fake


@pytest.fixture
def feishu():
    with FeishuAppFake(APP_ID, APP_SECRET, {"open_id": {OPEN_ID}}) as fake:
        yield fake


def wecom_app(fake):
    config = {"corp_id": CORP, "agent_id": AGENT, "agent_secret": SECRET, "base_url": fake.url}
    return build_channel("wecom_app", config)


def feishu_app(fake):
    config = {
        "app_id": APP_ID,
        "app_secret": APP_SECRET,
        "receive_id": OPEN_ID,
        "base_url": fake.url,
    }
    return build_channel("feishu_app", config)


def test_wecom_app_recalls_the_msgid_it_was_given_with_the_shared_token(
    db, wecom, ctx, make_message
):
    sent = wecom_app(wecom).send(make_message(), ctx)
    assert sent.status == "sent" and sent.remote_id == "msgid-1"
    result = wecom_app(wecom).recall(sent.remote_id, ctx)
    assert result.status == "recalled", result.detail
    recall = wecom.requests[-1]
    assert recall.path == "/cgi-bin/message/recall" and recall.json() == {"msgid": "msgid-1"}
    assert recall.query == {"access_token": "wecom-token-1"}
    assert wecom.recalled == ["msgid-1"] and wecom.tokens.fetches == 1
    assert wecom.problems == []


def test_wecom_app_recall_of_an_unknown_msgid_fails_with_wecoms_errcode(db, wecom, ctx):
    result = wecom_app(wecom).recall("msgid-404", ctx)
    assert result.status == "failed"
    assert result.detail == "WeCom errcode 40058: invalid msgid"
    assert wecom.recalled == []


def test_wecom_app_recall_fetches_a_new_token_once_when_the_old_one_expired(
    db, wecom, ctx, make_message
):
    sent = wecom_app(wecom).send(make_message(), ctx)
    wecom.tokens.expire_all()
    result = wecom_app(wecom).recall(sent.remote_id, ctx)
    assert result.status == "recalled", result.detail
    assert wecom.tokens.fetches == 2
    assert [r.query["access_token"] for r in wecom.sends[-2:]] == [
        "wecom-token-1",
        "wecom-token-2",
    ]


def test_wecom_app_cannot_edit_and_says_why(db, wecom, ctx, make_message):
    result = wecom_app(wecom).edit("msgid-1", make_message(), ctx)
    assert result.status == "not_supported" and "template cards" in result.detail
    assert wecom.requests == []


def test_feishu_app_deletes_the_message_id_it_was_given(db, feishu, ctx, make_message):
    sent = feishu_app(feishu).send(make_message(), ctx)
    assert sent.status == "sent"
    result = feishu_app(feishu).recall(sent.remote_id, ctx)
    assert result.status == "recalled", result.detail
    delete = feishu.requests[-1]
    assert delete.method == "DELETE"
    assert delete.path == f"/open-apis/im/v1/messages/{sent.remote_id}"
    assert delete.headers["authorization"] == "Bearer t-feishu-1"
    assert feishu.recalled == [sent.remote_id] and feishu.problems == []
    again = feishu_app(feishu).recall(sent.remote_id, ctx)
    assert again.status == "failed" and "230011" in again.detail
    assert "already recalled" in again.detail


def test_feishu_app_edits_a_text_with_put(db, feishu, ctx, make_message):
    sent = feishu_app(feishu).send(make_message(body="v1 is out"), ctx)
    result = feishu_app(feishu).edit(sent.remote_id, make_message(body="v1.0.1 is out"), ctx)
    assert result.status == "edited", result.detail
    ((message_id, method, content),) = feishu.edited
    assert (message_id, method) == (sent.remote_id, "PUT")
    assert "v1.0.1 is out" in content["text"] and feishu.problems == []


def test_feishu_app_updates_a_markdown_card_with_patch(db, feishu, ctx, make_message):
    sent = feishu_app(feishu).send(make_message(format="markdown", body="**v1**"), ctx)
    assert feishu.sent[sent.remote_id][1]["config"]["update_multi"] is True
    new = make_message(format="markdown", body="**v1.0.1**")
    result = feishu_app(feishu).edit(sent.remote_id, new, ctx)
    assert result.status == "edited", result.detail
    ((message_id, method, content),) = feishu.edited
    assert (message_id, method) == (sent.remote_id, "PATCH")
    assert content["elements"][0]["text"]["content"] == "**v1.0.1**"
    assert feishu.problems == []


def test_feishu_app_edit_of_an_unknown_message_fails_with_feishus_code(
    db, feishu, ctx, make_message
):
    result = feishu_app(feishu).edit("om_unknown", make_message(), ctx)
    assert result.status == "failed" and "230001" in result.detail
    assert "invalid message_id" in result.detail


@pytest.mark.parametrize("type_name", ["wecom_app", "feishu_app"])
def test_an_app_channel_without_a_kept_id_cannot_recall(type_name, ctx):
    config = (
        {"corp_id": CORP, "agent_id": AGENT, "agent_secret": SECRET}
        if type_name == "wecom_app"
        else {"app_id": APP_ID, "app_secret": APP_SECRET, "receive_id": OPEN_ID}
    )
    result = build_channel(type_name, config).recall(None, ctx)
    assert result.status == "not_supported" and "gave no" in result.detail
