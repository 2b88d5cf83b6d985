"""Hostile and careless input against the real server: every one a 4xx in the error shape.

After each, the admin's listings still answer 200, also across a restart on a database that
already holds out-of-range times written before the time rule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.ops import CONFIRM, db_file, rows, until, webhook
from support.server import Client, ServerProcess

HUGE = "1" + "0" * 30  # beyond 64 bits
DEEP = "[" * 1000 + "]" * 1000
PRIVATE = {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true"}
NOWHERE = "http://127.0.0.1:9/hook"  # a channel target no test ever sends to
LISTINGS = (
    "/api/v1/messages",
    "/api/v1/messages?status=scheduled",
    "/api/v1/keys",
    "/api/v1/channels",
    "/api/v1/users",
    "/api/v1/admin/audit",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Private targets allowed so that channels point at 127.0.0.1 (never the internet).
    srv = ServerProcess(tmp_path_factory.mktemp("hardening"), PRIVATE).start()
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def admin(server) -> Client:
    return server.client(server.create_key())


@pytest.fixture(scope="module")
def bob(server) -> Client:
    server.create_user("bob")
    return server.client(server.create_key("bob"))


@pytest.fixture(scope="module")
def anonymous(server) -> Client:
    return server.client(None)


def refused(answer, status: int, field: str | None = None) -> dict:
    """The error body of a refusal with `status`, in the shape of DESIGN §5, naming `field`."""
    assert answer.status_code == status, (answer.status_code, answer.text)
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    if field is not None:
        assert field in error["message"], error
        assert any(d["field"] == field for d in error["details"]), error
    return error


def listings_answer(admin: Client) -> None:
    for path in LISTINGS:
        answer = admin.get(path)
        assert answer.status_code == 200, (path, answer.text)
        for item in answer.json()["items"]:
            if "send_at" in item:
                assert admin.get(f"/api/v1/messages/{item['id']}").status_code == 200


def no_errors_logged(server: ServerProcess) -> None:
    log = server.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def test_times_outside_the_window_are_refused_naming_the_field(server, admin, bob):
    far = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    for when in ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", far):
        refused(bob.post("/api/v1/messages", json={"title": "t", "send_at": when}), 422, "send_at")
        listings_answer(admin)
    error = refused(bob.post("/api/v1/messages", json={"title": "t", "send_at": far}), 422)
    assert "limits.max_schedule_days" in error["message"]
    for when in ("9999-12-31T23:59:59-12:00", "2200-01-01T00:00:00Z"):
        refused(bob.post("/api/v1/keys", json={"expires_at": when}), 422, "expires_at")
    key = bob.post("/api/v1/keys", json={"name": "k"}).json()
    refused(
        bob.patch(f"/api/v1/keys/{key['id']}", json={"expires_at": "9999-12-31T23:59:59-12:00"}),
        422,
        "expires_at",
    )
    for query in ("since=9999-12-31T23:59:59-12:00", "until=0001-01-01T00:00:00%2B14:00"):
        refused(admin.get(f"/api/v1/messages?{query}"), 422, query.split("=")[0])
    listings_answer(admin)
    no_errors_logged(server)


@pytest.mark.parametrize(
    ("method", "path", "who"),
    [
        ("POST", "/api/v1/session", "anonymous"),
        ("POST", "/api/v1/messages", "bob"),
        ("POST", "/api/v1/channels", "bob"),
        ("POST", "/push/bob", "anonymous"),
        ("PATCH", "/api/v1/admin/config", "admin"),
    ],
)
def test_json_nested_past_the_limit_is_a_400_naming_it(
    server, admin, bob, anonymous, method, path, who
):
    client = {"admin": admin, "bob": bob, "anonymous": anonymous}[who]
    answer = client.request(
        method,
        path,
        data=DEEP,
        headers={"Content-Type": "application/json", **CONFIRM},
    )
    assert answer.status_code == 400, answer.text
    body = answer.json()
    message = body["error"]["message"] if "error" in body else body["message"]
    assert "64" in message
    listings_answer(admin)
    no_errors_logged(server)


def test_lone_surrogates_and_nuls_are_refused_naming_the_field(server, admin, bob, anonymous):
    raw = {"Content-Type": "application/json"}
    refused(
        anonymous.post(
            "/api/v1/session", data='{"username": "\\ud800", "password": "x"}', headers=raw
        ),
        422,
        "username",
    )
    refused(bob.post("/api/v1/messages", data='{"title": "a\\udfffb"}', headers=raw), 422, "title")
    refused(
        bob.post("/api/v1/channels", data='{"name": "\\ud83d", "type": "webhook"}', headers=raw),
        422,
        "name",
    )
    refused(bob.post("/api/v1/channels", json={"name": "a\x00b", "type": "webhook"}), 422, "name")
    refused(
        bob.post(
            "/api/v1/channels",
            json={"name": "nul", "type": "webhook", "config": {"url": NOWHERE + "\x00"}},
        ),
        422,
        "config.url",
    )
    push = anonymous.post(
        "/push/bob",
        data="title=a%00b&token=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert push.status_code == 422 and "title" in push.json()["message"], push.text
    refused(bob.post("/api/v1/messages", data='{"priority": 1e999}', headers=raw), 422, "priority")
    for ref in ("²", HUGE, 2**63 - 1):
        made = bob.post(
            "/api/v1/channels", json={"name": "grp", "type": "group", "config": {"members": [ref]}}
        )
        refused(made, 422, "config.members")
        made = bob.post(
            "/api/v1/channels",
            json={
                "name": "fb",
                "type": "webhook",
                "config": {"url": NOWHERE},
                "fallback": ref,
            },
        )
        refused(made, 422, "fallback")
    refused(bob.post("/api/v1/messages", data=b'{"title": "\xff"}', headers=raw), 400)
    listings_answer(admin)
    no_errors_logged(server)


def test_ids_beyond_64_bits_and_unicode_digits_are_4xx(server, admin, bob):
    for path in (
        f"/api/v1/messages/{HUGE}",
        f"/api/v1/channels/{HUGE}",
        f"/api/v1/keys/{HUGE}",
        f"/api/v1/users/{HUGE}",
        "/api/v1/messages/²",
        "/api/v1/messages/0",
    ):
        refused(admin.get(path), 404)
    refused(admin.post(f"/api/v1/admin/alerts/{HUGE}/ack"), 404)
    refused(admin.post(f"/api/v1/admin/config/versions/{HUGE}/rollback", headers=CONFIRM), 404)
    cursor = "MTAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw"  # base64 of 10**30
    for path, field in (
        (f"/api/v1/messages?cursor={cursor}", "cursor"),
        (f"/api/v1/messages?user={HUGE}", "user"),
        ("/api/v1/messages?user=²", "user"),
        ("/api/v1/messages?limit=²", "limit"),
        ("/api/v1/channels?limit=²", "limit"),
        ("/api/v1/stats?days=²", "days"),
        ("/api/v1/admin/stats?days=²", "days"),
        ("/api/v1/admin/logs?limit=²", "limit"),
        ("/api/v1/admin/logs?limit=5001", "limit"),
        ("/api/v1/admin/audit?action=a%00", "action"),
        ("/api/v1/messages?status=nope", "status"),
    ):
        refused(admin.get(path), 422, field)
    # A channel filter is a name or an id; names may be digits, so these are names: empty pages.
    for value in (HUGE, "²"):
        answer = admin.get(f"/api/v1/messages?channel={value}")
        assert answer.status_code == 200 and answer.json()["items"] == []
    listings_answer(admin)
    no_errors_logged(server)


def test_only_an_admin_makes_a_key_for_another_user(server, admin, bob):
    error = refused(bob.post("/api/v1/keys?user=admin", json={"name": "theirs"}), 403, "user")
    assert error["code"] == "forbidden"
    own = bob.get("/api/v1/keys").json()["items"]
    assert "theirs" not in {k["name"] for k in own}
    made = admin.post("/api/v1/keys?user=bob", json={"name": "given"})
    assert (
        made.status_code == 201 and made.json()["user_id"] != admin.get("/api/v1/me").json()["id"]
    )


def test_a_patch_without_a_body_is_a_400_as_the_document_says(server, admin, bob):
    channel = bob.post(
        "/api/v1/channels",
        json={"name": "patched", "type": "webhook", "config": {"url": NOWHERE}},
    ).json()
    document = admin.get("/openapi.json").json()
    for path, template in (
        (f"/api/v1/channels/{channel['id']}", "/api/v1/channels/{channel_id}"),
        ("/api/v1/me", "/api/v1/me"),
    ):
        assert document["paths"][template]["patch"]["requestBody"]["required"] is True
        error = refused(bob.patch(path), 400)
        assert error["code"] == "body_required"
    refused(admin.patch("/api/v1/admin/config", headers=CONFIRM), 400)
    assert bob.patch("/api/v1/me", json={}).status_code == 200


def test_the_document_types_every_parameter_the_server_checks(admin):
    document = admin.get("/openapi.json").json()
    operation = document["paths"]["/api/v1/messages/{message_id}"]["get"]
    assert operation["parameters"][0]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 2**63 - 1,
    }
    listing = {
        p["name"]: p["schema"] for p in document["paths"]["/api/v1/messages"]["get"]["parameters"]
    }
    assert listing["limit"] == {"type": "integer", "minimum": 1, "maximum": 200}
    assert listing["since"]["format"] == "date-time"
    assert "scheduled" in listing["status"]["enum"]
    logs = {
        p["name"]: p["schema"] for p in document["paths"]["/api/v1/admin/logs"]["get"]["parameters"]
    }
    assert logs["limit"]["maximum"] == 5000


def test_a_refused_callback_is_on_the_timeline_and_in_the_log(server_factory, sink):
    port = sink.url.rsplit(":", 1)[1]
    srv = server_factory({"MP_SECURITY__ALLOWED_PRIVATE_TARGETS": f"127.0.0.1:{port}"})
    api = srv.client(srv.create_key())
    hook = webhook(api, sink.url + "/hook")
    sent = api.post(
        "/api/v1/messages",
        json={"title": "cb", "channels": [hook["name"]], "callback_url": "http://127.0.0.1:1/cb"},
    )
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["id"]

    def failed_event():
        events = api.get(f"/api/v1/messages/{message_id}").json()["events"]
        return [e for e in events if e["type"] == "callback_failed"]

    event = until(failed_event, what="a callback_failed event")[0]
    assert "127.0.0.1" in event["detail"]["error"]
    line = until(
        lambda: [ln for ln in srv.log().splitlines() if f"callback of message {message_id}" in ln],
        what="the callback log line",
    )[0]
    assert "failed for good" in line and "/cb" not in line


def test_a_database_holding_out_of_range_times_lists_after_a_restart(server_factory):
    srv = server_factory(PRIVATE)
    api = srv.client(srv.create_key())
    webhook(api, NOWHERE, default=True)  # never called: the sends wait a day
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    scheduled = api.post("/api/v1/messages", json={"title": "later", "send_at": soon}).json()
    early = api.post("/api/v1/messages", json={"title": "early", "send_at": soon}).json()
    key = api.post("/api/v1/keys", json={"name": "old", "expires_at": soon}, headers=CONFIRM).json()
    assert srv.stop() == 0
    # What the server stored before the time rule: year 10000 and year 0 once in UTC.
    year_10000 = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() + 12 * 3600
    year_0 = datetime(1, 1, 1, tzinfo=UTC).timestamp() - 14 * 3600
    path = db_file(srv)
    rows(path, "UPDATE message SET send_at = ? WHERE id = ?", year_10000, scheduled["id"])
    rows(path, "UPDATE message SET send_at = ? WHERE id = ?", year_0, early["id"])
    rows(path, "UPDATE api_key SET expires_at = ? WHERE id = ?", year_10000, key["id"])
    rows(path, "DELETE FROM schema_version WHERE version >= 6")
    srv.start()
    assert "schema migration 6 applied" in srv.log()
    for path_ in ("/api/v1/messages", "/api/v1/messages?status=scheduled", "/api/v1/keys"):
        assert api.get(path_).status_code == 200, api.get(path_).text
    shown = api.get(f"/api/v1/messages/{scheduled['id']}").json()
    assert shown["send_at"] == "9999-12-31T23:59:59.000Z"
    keys = {k["id"]: k for k in api.get("/api/v1/keys").json()["items"]}
    assert keys[key["id"]]["expires_at"] == "9999-12-31T23:59:59.000Z"
    cancel = api.post(f"/api/v1/messages/{scheduled['id']}/cancel")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    assert (
        api.get(f"/api/v1/messages/{early['id']}").json()["send_at"] == "1970-01-01T00:00:00.000Z"
    )
    assert srv.stop() == 0
    srv.start()
    for path_ in ("/api/v1/messages", "/api/v1/keys"):
        assert api.get(path_).status_code == 200
    log = srv.log()
    assert "Traceback" not in log and " ERROR " not in log
