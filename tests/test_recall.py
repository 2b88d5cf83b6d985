"""Recall and edit through the real server against local fakes of Telegram, Discord, the WeCom
and Feishu apps, and the user's own inbox (the client channel)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from fakes.app_services import FeishuAppFake, WeComAppFake
from fakes.recall_services import DiscordRecallFake, TelegramRecallFake
from support.ops import webhook

from messagepusher.actors.channels.discord import webhook_url
from messagepusher.operations.listen import parse_events


@pytest.fixture
def telegram():
    with TelegramRecallFake("123:bot-token", "-1001") as fake:
        yield fake


@pytest.fixture
def wecom():
    with WeComAppFake("ww-corp", "wecom-app-secret", 1000002, ["ZhangSan"]) as fake:
        yield fake


@pytest.fixture
def feishu():
    with FeishuAppFake("cli_recall", "feishu-app-secret", {"open_id": {"ou_1"}}) as fake:
        yield fake


@pytest.fixture
def discord():
    with DiscordRecallFake("42", "dc-token") as fake:
        yield fake


def channel(api, name, type_, config):
    made = api.post("/api/v1/channels", json={"name": name, "type": type_, "config": config})
    assert made.status_code == 201, made.text


def sent(api, channels, **extra):
    posted = api.post(
        "/api/v1/messages",
        json={"title": "Deploy", "body": "v1 is out", "channels": channels, **extra},
    )
    assert posted.status_code == 202, posted.text
    return posted.json()["id"]


def sent_to_both(server, telegram, discord):
    """A client, and a message delivered to a Telegram and a Discord channel (the fakes)."""
    api = server.client(server.create_key())
    telegram_config = {"bot_token": "123:bot-token", "chat_id": "-1001", "base_url": telegram.url}
    channel(api, "tg", "telegram", telegram_config)
    channel(api, "dc", "discord", {"url": f"{discord.url}/api/webhooks/42/dc-token"})
    message_id = sent(api, ["tg", "dc"])
    assert api.wait_message(message_id, ("delivered", "failed"))["status"] == "delivered"
    return api, message_id


def changes(answer):
    return {d["channel"]["name"]: d["change"] for d in answer["deliveries"]}


def test_recall_deletes_the_telegram_and_discord_messages_by_the_ids_they_gave(
    private_server, telegram, discord
):
    api, message_id = sent_to_both(private_server, telegram, discord)
    tg_id, dc_id = next(iter(telegram.sent)), next(iter(discord.sent))
    got = api.delete(f"/api/v1/messages/{message_id}")
    assert got.status_code == 200, got.text
    assert changes(got.json()) == {
        "tg": {"action": "recall", "status": "recalled", "detail": ""},
        "dc": {"action": "recall", "status": "recalled", "detail": ""},
    }
    assert telegram.deleted == [tg_id] and discord.deleted == [dc_id]
    assert telegram.problems == [] and discord.problems == []
    timeline = [e["type"] for e in api.get(f"/api/v1/messages/{message_id}").json()["events"]]
    assert timeline[-1] == "recalled"
    again = api.delete(f"/api/v1/messages/{message_id}").json()
    assert {c["status"] for c in changes(again).values()} == {"failed"}  # gone at the service


def test_edit_replaces_the_text_at_telegram_and_discord(private_server, telegram, discord):
    api, message_id = sent_to_both(private_server, telegram, discord)
    tg_id, dc_id = next(iter(telegram.sent)), next(iter(discord.sent))
    got = api.patch(f"/api/v1/messages/{message_id}", json={"body": "v1 is out (fixed link)"})
    assert got.status_code == 200, got.text
    answer = got.json()
    assert {c["status"] for c in changes(answer).values()} == {"edited"}
    assert answer["body"] == "v1 is out (fixed link)" and answer["title"] == "Deploy"
    assert [i for i, _ in telegram.edited] == [tg_id] and "fixed link" in telegram.edited[0][1]
    assert [i for i, _ in discord.edited] == [dc_id] and "fixed link" in discord.edited[0][1]
    assert api.patch(f"/api/v1/messages/{message_id}", json={}).status_code == 422


def test_a_channel_that_cannot_recall_says_not_supported_and_why(private_server, sink):
    api = private_server.client(private_server.create_key())
    webhook(api, sink.url + "/in")
    message_id = sent(api, ["hook"])
    api.wait_message(message_id, ("delivered", "failed"))
    answer = api.delete(f"/api/v1/messages/{message_id}").json()
    change = changes(answer)["hook"]
    assert change["status"] == "not_supported" and "webhook" in change["detail"]
    edit = changes(api.patch(f"/api/v1/messages/{message_id}", json={"title": "x"}).json())
    assert edit["hook"]["status"] == "not_supported"


def test_recalling_a_scheduled_message_cancels_it_before_it_is_sent(private_server, sink):
    api = private_server.client(private_server.create_key())
    webhook(api, sink.url + "/in")
    send_at = datetime.now(UTC) + timedelta(seconds=3)
    message_id = sent(api, ["hook"], send_at=send_at.isoformat())
    assert api.get(f"/api/v1/messages/{message_id}").json()["status"] == "scheduled"
    answer = api.delete(f"/api/v1/messages/{message_id}").json()
    assert answer["status"] == "cancelled"
    assert changes(answer)["hook"] == {
        "action": "recall",
        "status": "recalled",
        "detail": "cancelled before it was sent",
    }
    other = sent(api, ["hook"], send_at=(send_at + timedelta(seconds=1)).isoformat())
    api.wait_message(other, ("delivered", "failed"))  # the send time has passed for both
    assert [r["body"]["id"] for r in sink.received()] == [other]


def test_another_users_message_cannot_be_recalled_or_edited(private_server, sink):
    api = private_server.client(private_server.create_key())
    webhook(api, sink.url + "/in")
    message_id = sent(api, ["hook"])
    private_server.create_user("eve")
    eve = private_server.client(private_server.create_key("eve"))
    assert eve.delete(f"/api/v1/messages/{message_id}").status_code == 404
    assert eve.patch(f"/api/v1/messages/{message_id}", json={"title": "x"}).status_code == 404


def test_discord_posts_wait_true_and_keeps_a_thread_id():
    url = "https://discord.com/api/webhooks/1/tok?thread_id=9"
    assert (
        webhook_url(url, wait="true")
        == "https://discord.com/api/webhooks/1/tok?thread_id=9&wait=true"
    )
    assert (
        webhook_url(url, "/messages/5")
        == "https://discord.com/api/webhooks/1/tok/messages/5?thread_id=9"
    )


def test_a_recall_the_service_refuses_is_failed_with_the_services_words(private_server, telegram):
    api = private_server.client(private_server.create_key())
    channel(
        api,
        "tg",
        "telegram",
        {"bot_token": "123:bot-token", "chat_id": "-1001", "base_url": telegram.url},
    )
    message_id = sent(api, ["tg"])
    api.wait_message(message_id, ("delivered", "failed"))
    telegram.sent.clear()  # as if Telegram's 48 hours had passed
    answer = api.delete(f"/api/v1/messages/{message_id}").json()
    assert changes(answer)["tg"]["status"] == "failed"
    assert "message to delete not found" in changes(answer)["tg"]["detail"]


def test_recall_takes_back_the_wecom_and_feishu_app_messages_by_the_ids_they_gave(
    private_server, wecom, feishu
):
    api = private_server.client(private_server.create_key())
    channel(
        api,
        "wx",
        "wecom_app",
        {
            "corp_id": "ww-corp",
            "agent_id": 1000002,
            "agent_secret": "wecom-app-secret",
            "base_url": wecom.url,
        },
    )
    channel(
        api,
        "fs",
        "feishu_app",
        {
            "app_id": "cli_recall",
            "app_secret": "feishu-app-secret",
            "receive_id": "ou_1",
            "base_url": feishu.url,
        },
    )
    message_id = sent(api, ["wx", "fs"])
    assert api.wait_message(message_id, ("delivered", "failed"))["status"] == "delivered"
    (msgid,) = wecom.msgids
    (feishu_id,) = feishu.sent
    got = api.delete(f"/api/v1/messages/{message_id}")
    assert got.status_code == 200, got.text
    assert changes(got.json()) == {
        "wx": {"action": "recall", "status": "recalled", "detail": ""},
        "fs": {"action": "recall", "status": "recalled", "detail": ""},
    }
    recall = wecom.sends[-1]
    assert recall.path == "/cgi-bin/message/recall" and recall.json() == {"msgid": msgid}
    assert wecom.recalled == [msgid] and feishu.recalled == [feishu_id]
    assert wecom.problems == [] and feishu.problems == []
    assert wecom.tokens.fetches == 1  # the send's token, shared through the database
    again = changes(api.delete(f"/api/v1/messages/{message_id}").json())
    assert again["wx"]["status"] == "failed" and "errcode 40058" in again["wx"]["detail"]
    assert again["fs"]["status"] == "failed" and "230011" in again["fs"]["detail"]


def test_edit_changes_the_feishu_text_and_wecom_app_says_it_cannot(private_server, wecom, feishu):
    api = private_server.client(private_server.create_key())
    channel(
        api,
        "wx",
        "wecom_app",
        {
            "corp_id": "ww-corp",
            "agent_id": 1000002,
            "agent_secret": "wecom-app-secret",
            "base_url": wecom.url,
        },
    )
    channel(
        api,
        "fs",
        "feishu_app",
        {
            "app_id": "cli_recall",
            "app_secret": "feishu-app-secret",
            "receive_id": "ou_1",
            "base_url": feishu.url,
        },
    )
    message_id = sent(api, ["wx", "fs"])
    api.wait_message(message_id, ("delivered", "failed"))
    (feishu_id,) = feishu.sent
    got = api.patch(f"/api/v1/messages/{message_id}", json={"body": "v1.0.1 is out"})
    assert got.status_code == 200, got.text
    change = changes(got.json())
    assert change["fs"] == {"action": "edit", "status": "edited", "detail": ""}
    assert change["wx"]["status"] == "not_supported" and "WeCom" in change["wx"]["detail"]
    ((edited_id, method, content),) = feishu.edited
    assert (edited_id, method) == (feishu_id, "PUT") and "v1.0.1 is out" in content["text"]


def test_recall_and_edit_change_the_users_inbox(private_server):
    api = private_server.client(private_server.create_key())
    channel(api, "desk", "client", {})
    first, second = sent(api, ["desk"]), sent(api, ["desk"])
    for message_id in (first, second):
        assert api.wait_message(message_id, ("delivered", "failed"))["status"] == "delivered"

    def listed():
        return {i["message_id"]: i for i in api.get("/api/v1/inbox").json()["items"]}

    assert set(listed()) == {first, second}
    edit = api.patch(f"/api/v1/messages/{second}", json={"title": "Deploy (fixed)"}).json()
    assert changes(edit)["desk"] == {"action": "edit", "status": "edited", "detail": ""}
    assert listed()[second]["title"] == "Deploy (fixed)"
    recall = api.delete(f"/api/v1/messages/{first}").json()
    assert changes(recall)["desk"] == {"action": "recall", "status": "recalled", "detail": ""}
    assert set(listed()) == {second}
    again = changes(api.delete(f"/api/v1/messages/{first}").json())["desk"]
    assert again["status"] == "failed" and "already gone" in again["detail"]


def test_a_recalled_newest_inbox_item_keeps_its_id_so_a_device_resuming_after_it_gets_the_next(
    private_server,
):
    key = private_server.create_key()
    api = private_server.client(key)
    channel(api, "desk", "client", {})
    first = sent(api, ["desk"])
    api.wait_message(first, ("delivered", "failed"))
    (item,) = api.get("/api/v1/inbox").json()["items"]
    recall = api.delete(f"/api/v1/messages/{first}").json()
    assert changes(recall)["desk"]["status"] == "recalled"
    assert api.post(f"/api/v1/inbox/{item['id']}/read").status_code == 404
    second = sent(api, ["desk"])
    api.wait_message(second, ("delivered", "failed"))
    resp = requests.get(
        private_server.url + "/api/v1/inbox/stream",
        headers={"Authorization": f"Bearer {key}", "Last-Event-ID": str(item["id"])},
        stream=True,
        timeout=(5, 15),
    )
    try:
        event = next(parse_events(resp.iter_lines(decode_unicode=True)))
    finally:
        resp.close()
    assert json.loads(event.data)["message_id"] == second and int(event.id) > item["id"]
