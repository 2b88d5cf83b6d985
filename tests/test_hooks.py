"""Incoming webhooks through the real server: secret URL, presets, templates, hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from support.ops import CONFIRM, db_file, rows, until, webhook

SAMPLES = Path(__file__).parent / "fixtures" / "hooks"


def make_hook(api, **body):
    made = api.post("/api/v1/hooks", json={"channels": ["hook"], **body})
    assert made.status_code == 201, made.text
    return made.json()


def test_a_preset_hook_turns_an_alertmanager_post_into_a_delivered_message(private_server, sink):
    api = private_server.client(private_server.create_key())
    webhook(api, sink.url + "/in")
    hook = make_hook(api, name="prom", preset="alertmanager")
    assert hook["url"].startswith(private_server.url + "/hooks/")
    sample = json.loads((SAMPLES / "alertmanager.json").read_text())
    got = requests.post(hook["url"], json=sample, timeout=30)
    assert got.status_code == 202, got.text
    message = api.wait_message(got.json()["id"], ("delivered", "failed"))
    assert message["status"] == "delivered"
    assert message["title"] == "[FIRING:1] ProbeFailure" and message["priority"] == 5
    assert sink.received()[0]["body"]["title"] == "[FIRING:1] ProbeFailure"
    shown = api.get(f"/api/v1/hooks/{hook['id']}").json()
    assert "url" not in shown and shown["last_used_at"]
    token = hook["url"].rsplit("/", 1)[1]
    assert token not in json.dumps(api.get("/api/v1/hooks").json())
    stored = rows(db_file(private_server), "SELECT token_hash FROM hook")
    assert token not in stored[0][0]
    wrong = "w" * 43
    assert (
        requests.post(private_server.url + "/hooks/" + wrong, json={}, timeout=30).status_code
        == 404
    )

    def audited():
        items = api.get("/api/v1/admin/audit?limit=200", headers=CONFIRM).json()["items"]
        posts = [a for a in items if a["action"] == "POST /hooks/{token}"]
        return items if len(posts) == 2 else None

    audit = until(audited, timeout=10, what="both hook posts audited")
    assert token not in json.dumps(audit) and wrong not in json.dumps(audit)
    assert any(a["target"] == f"hook:{hook['id']}" for a in audit)


def test_a_form_post_reaches_the_template_as_payload_and_picks_the_channel(private_server, sink):
    api = private_server.client(private_server.create_key())
    webhook(api, sink.url + "/in")
    hook = make_hook(
        api,
        name="form",
        template={
            "title": "Build {{ payload.status }}",
            "body": "by {{ payload.who }}",
            "channels": "{{ payload.to }}",
        },
        channels=None,  # the template names them
    )
    got = requests.post(
        hook["url"], data={"status": "green", "who": "ci", "to": "hook"}, timeout=30
    )
    assert got.status_code == 202, got.text
    message = api.wait_message(got.json()["id"], ("delivered", "failed"))
    assert (message["title"], message["body"]) == ("Build green", "by ci")
    wrong = requests.post(
        hook["url"], data=b"x", headers={"Content-Type": "text/plain"}, timeout=30
    )
    assert wrong.status_code == 415 and "form" in wrong.json()["error"]["message"]


def test_an_unknown_token_is_404_and_another_users_hook_is_404(private_server):
    api = private_server.client(private_server.create_key())
    hook = make_hook(api, name="gh", preset="github")
    assert requests.post(private_server.url + "/hooks/nope", json={}, timeout=30).status_code == 404
    private_server.create_user("eve")
    eve = private_server.client(private_server.create_key("eve"))
    for method, path in (
        ("GET", f"/api/v1/hooks/{hook['id']}"),
        ("PATCH", f"/api/v1/hooks/{hook['id']}"),
        ("DELETE", f"/api/v1/hooks/{hook['id']}"),
        ("POST", f"/api/v1/hooks/{hook['id']}/preview"),
    ):
        assert eve.request(method, path, json={}).status_code == 404, (method, path)
    assert eve.get("/api/v1/hooks").json()["items"] == []


def test_bad_templates_are_422_at_save_time_naming_the_field_and_line(private_server):
    api = private_server.client(private_server.create_key())
    broken = api.post(
        "/api/v1/hooks",
        json={"name": "x", "template": {"title": "ok", "body": "one\n{% for %}"}},
    )
    assert broken.status_code == 422
    detail = broken.json()["error"]["details"][0]
    assert detail["field"] == "template.body" and detail["message"].startswith("line 2:")
    hostile = api.post(
        "/api/v1/hooks", json={"name": "x", "template": {"title": "{{ ''.__class__.__mro__ }}"}}
    )
    assert hostile.status_code == 422 and "__mro__" in hostile.json()["error"]["message"]
    both = api.post(
        "/api/v1/hooks", json={"name": "x", "preset": "github", "template": {"title": "t"}}
    )
    assert both.status_code == 422
    assert api.get("/api/v1/hooks").json()["items"] == []


def test_a_100_mb_template_is_cut_off_the_raw_payload_is_delivered_and_the_server_keeps_serving(
    private_server, sink
):
    api = private_server.client(private_server.create_key())
    webhook(api, sink.url + "/in")
    huge = (
        "{% for i in range(100000) %}{% for j in range(1000) %}xxxxxxxxxx{% endfor %}{% endfor %}"
    )
    hook = make_hook(api, name="huge", template={"title": "t", "body": huge})
    preview = api.post(f"/api/v1/hooks/{hook['id']}/preview", json={"payload": {"a": 1}})
    assert preview.status_code == 200 and "cut off" in preview.json()["error"]
    got = requests.post(hook["url"], json={"deploy": "v42"}, timeout=30)
    assert got.status_code == 202 and "cut off" in got.json()["template_error"]
    message = api.wait_message(got.json()["id"], ("delivered", "failed"))
    assert message["title"] == "huge: template failed" and '"deploy": "v42"' in message["body"]
    assert "cut off" in api.get(f"/api/v1/hooks/{hook['id']}").json()["last_error"]
    assert requests.get(private_server.url + "/healthz", timeout=10).status_code == 200
    endless = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    slow = make_hook(api, name="slow", template={"title": "t", "body": endless})
    got = requests.post(slow["url"], json={}, timeout=30)
    assert got.status_code == 202 and "budget" in got.json()["template_error"]
    assert requests.get(private_server.url + "/healthz", timeout=10).status_code == 200


def test_preview_renders_a_sample_or_a_trial_template_without_sending(private_server, sink):
    api = private_server.client(private_server.create_key())
    webhook(api, sink.url + "/in")
    hook = make_hook(api, name="kuma", preset="uptime_kuma")
    sample = json.loads((SAMPLES / "uptime_kuma.json").read_text())
    shown = api.post(f"/api/v1/hooks/{hook['id']}/preview", json={"payload": sample}).json()
    assert shown["error"] is None and shown["message"]["title"] == "Testing is DOWN"
    trial = api.post(
        f"/api/v1/hooks/{hook['id']}/preview",
        json={"payload": sample, "template": {"title": "{{ payload.monitor.name|upper }}"}},
    ).json()
    assert trial["message"]["title"] == "TESTING"
    changed = api.patch(f"/api/v1/hooks/{hook['id']}", json={"preset": "grafana"})
    assert changed.status_code == 200 and changed.json()["preset"] == "grafana"
    assert sink.received() == []
    assert api.get("/api/v1/messages").json()["items"] == []
