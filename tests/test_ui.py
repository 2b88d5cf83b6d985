"""The web UI is served with Bootstrap from its package, every API path it calls exists in the
OpenAPI document (or is the tasks contract it degrades without), and the dashboard's series."""

from __future__ import annotations

import hashlib
import re

import pytest
import requests
from support.ops import until
from support.server import ADMIN_PASSWORD, REPO

UI_DIR = REPO / "http" / "ui"
# Bootstrap 5.3.8's release files as published (http/ui/vendor/README.md says where from).
BOOTSTRAP_RELEASE = {
    "bootstrap.min.css": "d85327d99c7a3ee1f9b5d0500d1370acea3ad2db39c163c2f51f232baedbdede",
    "bootstrap.bundle.min.js": "e4fd49181388c48ec5040bd3fe66f57c29c8e67fcd8502b3354b96ec7ab47cc7",
}


def called_paths() -> set[str]:
    """The API paths the UI's scripts call, with each ${…} in a path segment read as 1."""
    source = "\n".join(p.read_text() for p in sorted(UI_DIR.glob("*.js")))
    return {
        re.sub(r"\$\{[^}]+\}", "", re.sub(r"/\$\{[^}]+\}", "/1", m)).split("?")[0]
        for m in re.findall(r"[`\"](/(?:api/v1|openapi)[^`\"]*)[`\"]", source)
    }


def test_the_ui_is_served_with_security_headers_and_only_calls_documented_endpoints(private_server):
    page = requests.get(private_server.url + "/", timeout=10)
    assert page.status_code == 200 and "MessagePusher" in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for name in ("app.js", "render.js", "i18n.js", "qr.js"):
        script = requests.get(private_server.url + f"/ui/{name}", timeout=10)
        assert script.status_code == 200, name
        assert script.headers["Content-Type"].startswith("text/javascript"), name
    assert requests.get(private_server.url + "/ui/../main.py", timeout=10).status_code == 404
    paths = requests.get(private_server.url + "/openapi.json", timeout=10).json()["paths"]
    templates = [re.compile("^" + re.sub(r"{\w+}", r"[^/]+", p) + "$") for p in paths]
    called = called_paths()
    assert "/api/v1/messages/1" in called and "/api/v1/admin/stats/charts" in called, called
    missing = sorted(c for c in called if not any(t.match(c) for t in templates))
    assert not missing, f"the UI calls endpoints the API does not have: {missing}"


def test_bootstrap_is_the_vendored_release_unchanged_and_nothing_comes_from_elsewhere(
    private_server,
):
    for name, digest in BOOTSTRAP_RELEASE.items():
        served = requests.get(private_server.url + f"/ui/{name}", timeout=10)
        assert served.status_code == 200, name
        assert hashlib.sha256(served.content).hexdigest() == digest, f"{name} is not 5.3.8's"
        assert b"v5.3.8" in served.content[:200], name
    page = requests.get(private_server.url + "/", timeout=10).text
    linked = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert linked and all(link.startswith(("/ui/", "data:")) for link in linked), linked
    scripts = "\n".join(p.read_text() for p in UI_DIR.glob("*.js"))
    assert "alert(" not in scripts.replace("window.alert", "")  # toasts and modals, never alert()


@pytest.fixture(params=["sqlite", "postgres"])
def charted_server(request, server_factory):
    """A server on SQLite, then on the local PostgreSQL: the series are plain SQL on both."""
    env = {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true"}
    if request.param == "postgres":
        url, _schema = request.getfixturevalue("postgres_url")
        env["MP_DATABASE__URL"] = url
    return server_factory(env)


def test_the_dashboard_series_count_final_messages_deliveries_and_queue_depth(charted_server, sink):
    private_server = charted_server
    admin = private_server.client(private_server.create_key())
    made = admin.post(
        "/api/v1/channels",
        json={"name": "sink", "type": "webhook", "config": {"url": sink.url}, "default": True},
    )
    assert made.status_code == 201, made.text
    ids = [admin.post("/api/v1/messages", json={"title": f"m{i}"}).json()["id"] for i in range(3)]
    for message_id in ids:
        admin.wait_message(message_id, ("delivered",))
    charts = admin.get("/api/v1/admin/stats/charts")
    assert charts.status_code == 200, charts.text
    body = charts.json()
    hourly = body["messages_per_hour"]
    assert len(hourly["hours"]) == 24 and hourly["hours"] == sorted(hourly["hours"])
    assert sum(hourly["by_status"]["delivered"]) == 3 and hourly["by_status"]["delivered"][-1] == 3
    assert sum(hourly["by_status"]["failed"]) == 0
    assert body["delivery_success"] == [{"type": "webhook", "sent": 3, "failed": 0, "rate": 1.0}]
    depth = body["queue_depth"]
    assert len(depth["at"]) == len(depth["total"]) == 13
    assert depth["total"][-1] == 0  # everything delivered: nothing waits now
    assert "channel_pool" in depth["by_mailbox"]  # the sends counted while they waited
    user_key = private_server.create_key(scopes="messages:read")
    refused = requests.get(
        private_server.url + "/api/v1/admin/stats/charts",
        headers={"Authorization": f"Bearer {user_key}"},
        timeout=10,
    )
    assert refused.status_code == 403, refused.text


def test_the_audit_log_filters_by_a_part_of_the_action(private_server):
    session = requests.Session()
    login = session.post(
        private_server.url + "/api/v1/session",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    admin = private_server.client(private_server.create_key())
    made = admin.post("/api/v1/channels", json={"name": "q", "type": "none", "config": {}})
    assert made.status_code == 201, made.text

    def actions(contains: str) -> set[str]:
        page = admin.get(f"/api/v1/admin/audit?contains={contains}&limit=200")
        assert page.status_code == 200, page.text
        return {a["action"] for a in page.json()["items"]}

    # Audit rows are written in batches, off the request.
    found = until(lambda: actions("channels"), 30, "the channel's audit row")
    assert found == {"POST /api/v1/channels"}, found
    assert "POST /api/v1/session" in actions("session")
    assert actions("no-such-action") == set()
