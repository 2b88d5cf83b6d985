"""The audit log: a row for every mutation and sensitive read, its filters, and the batching writer.

Rows are written by a background thread at most 0.5 s after the request, so tests poll (bounded).
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from fakes.sink import Sink
from support.server import ADMIN_PASSWORD, ServerProcess

from messagepusher.http import audit
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import AuditLog

PASSWORD = "audit-pass-Test-1"
serial = count(1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    sink = Sink()
    server = ServerProcess(
        tmp_path_factory.mktemp("audit"), {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true"}
    ).start()
    yield server, server.client(server.create_key()), sink
    server.stop()
    sink.close()


def new_user(env, scopes: list[str] | None = None) -> tuple[str, object]:
    server, admin, _sink = env
    name = f"aud{next(serial)}"
    assert (
        admin.post("/api/v1/users", json={"username": name, "password": PASSWORD}).status_code
        == 201
    )
    body = {} if scopes is None else {"scopes": scopes}
    return name, server.client(admin.post(f"/api/v1/keys?user={name}", json=body).json()["key"])


def rows_of(admin, n: int, **filters) -> list[dict]:
    """The newest audit rows matching the filters, once there are at least n (bounded wait)."""
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    deadline = time.monotonic() + 30
    while True:
        rows = admin.get(f"/api/v1/admin/audit?limit=200&{query}").json()["items"]
        if len(rows) >= n:
            return rows
        assert time.monotonic() < deadline, f"wanted {n} audit rows for {filters}, have {rows}"
        time.sleep(0.1)


def test_every_mutation_is_recorded_with_who_what_target_outcome_and_address(env):
    server, admin, sink = env
    name, client = new_user(env)
    made = client.post(
        "/api/v1/channels", json={"name": "hook", "type": "webhook", "config": {"url": sink.url}}
    )
    channel_id = made.json()["id"]
    assert (
        client.patch(f"/api/v1/channels/{channel_id}", json={"enabled": "maybe"}).status_code == 422
    )
    assert client.delete(f"/api/v1/channels/{channel_id}").status_code == 204
    assert client.delete("/api/v1/channels/999999").status_code == 404
    rows = rows_of(admin, 4, user=name)
    by_action = {(r["action"], r["detail"]["status"]): r for r in rows}
    created = by_action[("POST /api/v1/channels", 201)]
    assert (
        created["outcome"] == "ok"
        and created["role"] == "user"
        and created["address"] == "127.0.0.1"
    )
    assert (
        created["username"] == name
        and created["detail"]["via"] == "key"
        and created["detail"]["key_id"]
    )
    invalid = by_action[("PATCH /api/v1/channels/{channel_id}", 422)]
    assert invalid["outcome"] == "error" and invalid["target"] == str(channel_id)
    assert invalid["detail"]["error"] == "invalid_field"
    assert by_action[("DELETE /api/v1/channels/{channel_id}", 204)]["outcome"] == "ok"
    assert by_action[("DELETE /api/v1/channels/{channel_id}", 404)]["target"] == "999999"


def test_refused_mutations_are_recorded_as_denied_even_without_credentials(env):
    server, admin, _sink = env
    name, reader = new_user(env, scopes=["channels:read"])
    assert reader.post("/api/v1/channels", json={}).status_code == 403
    rows = rows_of(admin, 1, user=name, outcome="denied")
    assert (
        rows[0]["action"] == "POST /api/v1/channels"
        and rows[0]["detail"]["error"] == "missing_scope"
    )
    marker = f"/api/v1/messages/{900000 + next(serial)}/cancel"
    assert server.client("mp_nothing_here").post(marker).status_code == 401
    target = marker.split("/")[4]
    anonymous = rows_of(admin, 1, action="POST /api/v1/messages/{message_id}/cancel", target=target)
    assert anonymous[0]["user_id"] is None and anonymous[0]["outcome"] == "denied"
    assert anonymous[0]["detail"] == {"status": 401, "error": "unauthorized"}


def test_plain_reads_are_not_recorded_but_reading_the_audit_log_is(env):
    _server, admin, _sink = env
    name, client = new_user(env)
    assert client.get("/api/v1/channels").status_code == 200
    assert client.get("/api/v1/me").status_code == 200
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    reads = rows_of(admin, 1, action="read audit log", since=since)
    assert reads[0]["username"] == "admin" and reads[0]["outcome"] == "ok"
    assert not [
        r
        for r in admin.get(f"/api/v1/admin/audit?user={name}").json()["items"]
        if r["action"].startswith("GET")
    ]


def test_the_admin_filters_by_user_action_outcome_and_time_and_pages_newest_first(env):
    _server, admin, _sink = env
    name, client = new_user(env)
    for n in range(5):
        client.patch("/api/v1/me", json={"display_name": f"n{n}"})
    client.patch("/api/v1/me", json={"email": "broken"})
    rows = rows_of(admin, 6, user=name, action="PATCH /api/v1/me")
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    assert [r["outcome"] for r in rows[:1]] == ["error"]
    assert len(rows_of(admin, 5, user=name, outcome="ok")) == 5
    first = admin.get(f"/api/v1/admin/audit?user={name}&limit=4").json()
    second = admin.get(
        f"/api/v1/admin/audit?user={name}&limit=4&cursor={first['next_cursor']}"
    ).json()
    assert len(first["items"]) == 4 and len(second["items"]) == 2 and second["next_cursor"] is None
    assert first["items"][-1]["id"] > second["items"][0]["id"]
    middle = rows[3]["at"]
    newer = admin.get(f"/api/v1/admin/audit?user={name}&since={middle}").json()["items"]
    older = admin.get(f"/api/v1/admin/audit?user={name}&until={middle}").json()["items"]
    assert len(newer) + len(older) == 6 and all(r["at"] >= middle for r in newer)
    bad = admin.get("/api/v1/admin/audit?outcome=maybe")
    assert bad.status_code == 422 and "outcome" in bad.json()["error"]["message"]


def test_a_user_sees_only_their_own_entries(env):
    _server, admin, _sink = env
    name, client = new_user(env)
    other, other_client = new_user(env)
    client.patch("/api/v1/me", json={"display_name": "mine"})
    other_client.patch("/api/v1/me", json={"display_name": "theirs"})
    rows_of(admin, 1, user=other)
    rows_of(admin, 1, user=name)
    mine = client.get("/api/v1/me/audit").json()["items"]
    assert mine and {r["username"] for r in mine} == {name}
    assert client.get("/api/v1/admin/audit").status_code == 403


def test_no_audit_detail_holds_a_body_password_key_or_channel_secret(env):
    server, admin, sink = env
    name, client = new_user(env)
    secret_token = "tok-" + "s3cr3t" * 4
    client.post(
        "/api/v1/channels",
        json={
            "name": "bot",
            "type": "webhook",
            "config": {"url": sink.url, "headers": {"X-Token": secret_token}},
        },
    )
    new_key = client.post("/api/v1/keys", json={"name": "k"}).json()["key"]
    client.patch(
        "/api/v1/me", json={"password": "changed-pass-Test-2", "current_password": PASSWORD}
    )
    client.patch(
        "/api/v1/me",
        json={"password": "changed-pass-Test-3", "current_password": "wrong-pass-Test-9"},
    )
    admin.delete("/api/v1/users/999999", headers={"X-Confirm": ADMIN_PASSWORD})
    rows = rows_of(admin, 4, user=name)
    text = str(admin.get("/api/v1/admin/audit?limit=200").json())
    for secret in (
        secret_token,
        new_key,
        new_key.split("_", 2)[2],
        PASSWORD,
        "changed-pass-Test-2",
        "changed-pass-Test-3",
        "wrong-pass-Test-9",
        ADMIN_PASSWORD,
    ):
        assert secret not in text, secret
    patch = [r for r in rows if r["action"] == "PATCH /api/v1/me" and r["outcome"] == "ok"][0]
    assert patch["detail"]["changed"] == ["password"]


def test_rows_queued_when_the_server_stops_are_written_before_it_exits(tmp_path):
    server = ServerProcess(tmp_path / "stop").start()
    admin = server.client(server.create_key())
    assert admin.patch("/api/v1/me", json={"display_name": "last words"}).status_code == 200
    assert server.stop() == 0
    with sqlite3.connect(server.data_dir / "messagepusher.db") as db:
        actions = [r[0] for r in db.execute("SELECT action FROM audit_log")]
    assert "PATCH /api/v1/me" in actions


# --- the writer, in this process --------------------------------------------------------------


def row(n: int) -> dict:
    return {
        "at": time.time(),
        "user_id": None,
        "username": "",
        "role": "",
        "action": f"POST /x/{n}",
        "target": str(n),
        "outcome": "ok",
        "address": "127.0.0.1",
        "detail": {"status": 200},
    }


def test_the_writer_inserts_a_burst_of_rows_in_a_few_transactions(db, monkeypatch):
    transactions = []

    def counting(db=None):
        transactions.append(1)
        return write_transaction(db)

    monkeypatch.setattr(audit, "write_transaction", counting)
    writer = audit.AuditWriter(interval=0.5, batch=500).start()
    for n in range(1200):
        writer.record(row(n))
    writer.close()
    assert AuditLog.select().count() == 1200
    assert len(transactions) <= 4
    assert AuditLog.get(AuditLog.target == "7").detail == {"status": 200}


def test_the_writer_flushes_within_its_interval_without_being_closed(db):
    writer = audit.AuditWriter(interval=0.2).start()
    try:
        writer.record(row(1))
        deadline = time.monotonic() + 5
        while AuditLog.select().count() == 0:
            assert time.monotonic() < deadline, "the row was not written within 5 s"
            time.sleep(0.05)
    finally:
        writer.close()


def test_closing_cuts_the_gathering_short_and_writes_what_waits(db):
    writer = audit.AuditWriter(interval=600).start()
    writer.record(row(1))
    writer.record(row(2))
    writer.close(timeout=60)
    assert not writer._thread.is_alive(), "close waited for the 600 s interval"
    assert AuditLog.select().count() == 2


def test_status_codes_map_to_outcomes():
    assert [audit.outcome_of(s) for s in (200, 204, 401, 403, 429, 404, 409, 422, 500)] == [
        "ok",
        "ok",
        "denied",
        "denied",
        "denied",
        "error",
        "error",
        "error",
        "error",
    ]
