"""Channel features beyond one plugin: fallback, groups, secrets at rest, test sends, /push compat."""

from __future__ import annotations

import pytest
from fakes.sink import Sink
from support.server import ServerProcess

FINAL = ("delivered", "failed", "partially_failed", "cancelled")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(
        tmp_path_factory.mktemp("features"),
        {
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_RETRY__MAX_ATTEMPTS": "2",
            "MP_RETRY__BASE_DELAY_SECONDS": "0.1",
            "MP_RETRY__JITTER": "0",
        },
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server):
    return server.client(server.create_key())


def channel(api, name: str, type_: str, config: dict, **extra) -> dict:
    r = api.post("/api/v1/channels", json={"name": name, "type": type_, "config": config, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def send(api, **body) -> dict:
    r = api.post("/api/v1/messages", json=body)
    assert r.status_code == 202, r.text
    return api.wait_message(r.json()["id"], FINAL)


def test_a_dead_delivery_falls_back_to_the_named_channel_and_the_timeline_says_so(api, sink):
    broken = Sink()
    broken.default_status = 503
    try:
        backup = channel(api, "fb-backup", "webhook", {"url": sink.url + "/backup"})
        channel(
            api, "fb-primary", "webhook", {"url": broken.url + "/primary"}, fallback="fb-backup"
        )
        message = send(api, title="with fallback", channels=["fb-primary"])
        assert message["status"] == "delivered"
        primary, fallback = message["deliveries"]
        assert primary["status"] == "dead" and fallback["status"] == "sent"
        assert (
            fallback["channel"]["id"] == backup["id"] and fallback["fallback_of"] == primary["id"]
        )
        assert any(
            e["type"] == "fallback" and e["detail"]["to"] == "fb-backup" for e in message["events"]
        )
        assert len(broken.received(None)) == 2 and sink.received()[0]["path"] == "/backup"
    finally:
        broken.close()


def test_a_fallback_that_fails_too_leaves_the_message_failed_with_both_deliveries_final(api):
    refusing = Sink()
    refusing.default_status = 400  # a permanent failure: one attempt each
    try:
        channel(api, "ff-backup", "webhook", {"url": refusing.url + "/backup"})
        channel(
            api, "ff-primary", "webhook", {"url": refusing.url + "/primary"}, fallback="ff-backup"
        )
        message = send(api, title="fallback fails", channels=["ff-primary"])
        assert message["status"] == "failed", message
        primary, fallback = message["deliveries"]
        assert (primary["status"], fallback["status"]) == ("failed", "failed"), message
        assert fallback["fallback_of"] == primary["id"] and fallback["response_code"] == 400
        assert [r["path"] for r in refusing.received(None)] == ["/primary", "/backup"]
    finally:
        refusing.close()


def test_a_message_whose_channels_partly_fail_ends_partially_failed_with_each_outcome_kept(
    api, sink
):
    refusing = Sink()
    refusing.default_status = 400
    try:
        channel(api, "pf-good", "webhook", {"url": sink.url + "/good"})
        channel(api, "pf-bad", "webhook", {"url": refusing.url + "/bad"})
        message = send(api, title="half", channels=["pf-good", "pf-bad"])
        assert message["status"] == "partially_failed", message
        outcomes = {d["channel"]["name"]: d["status"] for d in message["deliveries"]}
        assert outcomes == {"pf-good": "sent", "pf-bad": "failed"}
        assert "partially_failed" in [e["type"] for e in message["events"]]
        assert [r["path"] for r in sink.received()] == ["/good"]
    finally:
        refusing.close()


def test_a_group_fans_out_to_one_delivery_per_member(api, sink):
    other = Sink()
    try:
        channel(api, "g-a", "webhook", {"url": sink.url + "/a"})
        channel(api, "g-b", "webhook", {"url": other.url + "/b"})
        channel(api, "g-team", "group", {"members": ["g-a", "g-b"]})
        message = send(api, title="to the team", channels=["g-team"])
        assert message["status"] == "delivered"
        assert sorted(d["channel"]["name"] for d in message["deliveries"]) == ["g-a", "g-b"]
        assert len(sink.received()) == 1 and len(other.received()) == 1
        r = api.post(
            "/api/v1/channels",
            json={"name": "g-bad", "type": "group", "config": {"members": ["nope"]}},
        )
        assert r.status_code == 422 and "members" in r.json()["error"]["message"]
    finally:
        other.close()


def test_channel_secrets_are_encrypted_in_the_database_and_masked_in_responses(server, api):
    token = "tg-bot-token-PLAINTEXT-123456:ABCDEF"
    created = channel(api, "secret-tg", "telegram", {"bot_token": token, "chat_id": "42"})
    assert token not in str(created) and created["config"]["bot_token"].startswith("****")
    assert created["config"]["bot_token"].endswith(token[-4:])
    listed = api.get("/api/v1/channels").json()
    assert token not in str(listed)
    patched = api.patch(f"/api/v1/channels/{created['id']}", json={"config": {"chat_id": "43"}})
    assert patched.status_code == 200 and patched.json()["config"]["chat_id"] == "43"
    db_files = [p for p in server.data_dir.iterdir() if p.name.startswith("messagepusher.db")]
    for path in db_files:
        assert token.encode() not in path.read_bytes(), path
        assert b"PLAINTEXT" not in path.read_bytes(), path
    assert token not in server.log()


def test_the_test_endpoint_sends_a_real_message_and_returns_the_services_answer(api, sink):
    created = channel(api, "t-hook", "webhook", {"url": sink.url + "/test"})
    r = api.post(f"/api/v1/channels/{created['id']}/test")
    assert (
        r.status_code == 200 and r.json()["status"] == "sent" and r.json()["response_code"] == 200
    )
    assert "测试" in sink.received()[0]["body"]["title"]
    sink.default_status = 404
    r = api.post(f"/api/v1/channels/{created['id']}/test")
    assert r.json()["status"] == "permanent" and r.json()["response_code"] == 404


def test_push_compat_accepts_query_form_and_json_with_a_token(server, api, sink):
    channel(api, "compat-hook", "webhook", {"url": sink.url + "/compat"})
    key = server.create_key("admin", scopes="messages:send")
    base = server.url + "/push/admin"
    import requests

    r = requests.get(
        base,
        params={"title": "via get", "description": "d", "token": key, "channel": "compat-hook"},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["success"] is True and r.json()["uuid"]
    r = requests.post(
        base,
        data={"title": "via form", "content": "**md**", "token": key, "channel": "compat-hook"},
        timeout=10,
    )
    assert r.json()["success"] is True
    r = requests.post(
        base,
        json={"title": "via json", "description": "x", "token": key, "channel": "compat-hook"},
        timeout=10,
    )
    assert r.json()["success"] is True
    ids = [int(r.json()["uuid"])]
    api.wait_message(ids[0], FINAL)
    titles = {x["body"]["title"] for x in sink.wait_for(lambda rs: len(rs) >= 3)}
    assert titles == {"via get", "via form", "via json"}
    bad = requests.get(base, params={"title": "x", "token": "mp_nope_nope"}, timeout=10)
    assert bad.status_code == 401 and bad.json()["success"] is False
    wrong_user = requests.get(
        server.url + "/push/someone", params={"title": "x", "token": key}, timeout=10
    )
    assert wrong_user.status_code == 401 and wrong_user.json()["success"] is False
    reader = server.create_key("admin", scopes="messages:read")
    assert requests.get(base, params={"title": "x", "token": reader}, timeout=10).status_code == 403
