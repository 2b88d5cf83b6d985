"""Web sessions: log-in cookie, CSRF on cookie-borne mutations, log-out, and failed-login throttling.

Lock-outs count per account and per client address; the tests use several loopback source
addresses (127.0.0.x) so that each one starts from a clean slate.
"""

from __future__ import annotations

import json
import sqlite3
import time
from itertools import count

import pytest
import requests
import urllib3
from support.server import ADMIN_PASSWORD, ServerProcess

from messagepusher.accounts import users as accounts

PASSWORD = "session-pass-1"
SLOWDOWN = 0.2
MAX_FAILURES = 3
serial = count(1)
addresses = (f"127.0.0.{n}" for n in range(2, 250))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    server = ServerProcess(
        tmp_path_factory.mktemp("sessions"),
        {
            "MP_SECURITY__LOGIN__SLOWDOWN_SECONDS": str(SLOWDOWN),
            "MP_SECURITY__LOGIN__MAX_FAILURES": str(MAX_FAILURES),
            "MP_SECURITY__LOGIN__LOCKOUT_SECONDS": "3600",
        },
    ).start()
    yield server, server.client(server.create_key())
    server.stop()


def new_user(env) -> str:
    _server, admin = env
    name = f"web{next(serial)}"
    made = admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    assert made.status_code == 201, made.text
    return name


def login_from(
    server: ServerProcess, address: str, username: str, password: str
) -> urllib3.BaseHTTPResponse:
    """POST /api/v1/session from a chosen loopback source address."""
    pool = urllib3.HTTPConnectionPool(
        "127.0.0.1", server.port, source_address=(address, 0), retries=False
    )
    return pool.request(
        "POST",
        "/api/v1/session",
        body=json.dumps({"username": username, "password": password}),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def web_login(server: ServerProcess, username: str) -> tuple[requests.Session, str]:
    web = requests.Session()
    resp = web.post(
        server.url + "/api/v1/session", json={"username": username, "password": PASSWORD}
    )
    assert resp.status_code == 200, resp.text
    return web, resp.json()["csrf_token"]


def audit_rows(admin, wanted, **filters) -> list[dict]:
    """Audit rows matching the filters once `wanted(rows)` holds; the writer flushes every 0.5 s."""
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    deadline = time.monotonic() + 30
    while True:
        rows = admin.get(f"/api/v1/admin/audit?limit=200&{query}").json()["items"]
        if wanted(rows):
            return rows
        assert time.monotonic() < deadline, f"no audit rows as wanted for {filters}: {rows[:5]}"
        time.sleep(0.1)


def test_logging_in_sets_an_httponly_strict_cookie_and_stores_only_hashes(env):
    server, _admin = env
    name = new_user(env)
    resp = requests.post(
        server.url + "/api/v1/session", json={"username": name, "password": PASSWORD}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user"]["username"] == name and body["csrf_token"] and body["expires_at"]
    cookie = resp.headers["Set-Cookie"]
    token = resp.cookies["mp_session"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="):
        assert attribute in cookie, cookie
    with sqlite3.connect(server.data_dir / "messagepusher.db") as db:
        stored = db.execute("SELECT * FROM web_session").fetchall()
    assert stored and not any(token in str(row) or body["csrf_token"] in str(row) for row in stored)


def test_a_password_change_ends_ones_other_sessions_and_keeps_the_one_that_made_it(env):
    server, _admin = env
    name = new_user(env)
    here, csrf = web_login(server, name)
    elsewhere, _ = web_login(server, name)
    assert elsewhere.get(server.url + "/api/v1/me").status_code == 200
    changed = here.patch(
        server.url + "/api/v1/me",
        json={"password": "session-pass-2", "current_password": PASSWORD},
        headers={"X-CSRF-Token": csrf},
    )
    assert changed.status_code == 200, changed.text
    assert elsewhere.get(server.url + "/api/v1/me").status_code == 401
    assert here.get(server.url + "/api/v1/me").status_code == 200
    again = requests.post(
        server.url + "/api/v1/session",
        json={"username": name, "password": "session-pass-2"},
        timeout=30,
    )
    assert again.status_code == 200, again.text


def login_cookie(server: ServerProcess, username: str, headers: dict[str, str]) -> str:
    resp = requests.post(
        server.url + "/api/v1/session",
        json={"username": username, "password": PASSWORD},
        headers=headers,
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp.headers["Set-Cookie"]


def secure(cookie: str) -> bool:
    return "secure" in [part.strip().lower() for part in cookie.split(";")]


def test_the_cookie_is_secure_only_when_a_trusted_proxy_says_the_request_came_over_https(
    env, server_factory
):
    https = {"X-Forwarded-Proto": "https"}
    server, _admin = env  # no trusted proxy: anyone could send the header, so it counts for nothing
    name = new_user(env)
    assert not secure(login_cookie(server, name, https))
    behind = server_factory({"MP_SERVER__TRUSTED_PROXY": "127.0.0.1"})
    behind.create_user("proxied", PASSWORD)
    assert secure(login_cookie(behind, "proxied", https))
    assert not secure(login_cookie(behind, "proxied", {}))
    assert not secure(login_cookie(behind, "proxied", {"X-Forwarded-Proto": "http"}))


def test_a_cookie_mutation_needs_the_csrf_token_and_a_read_does_not(env):
    server, admin = env
    name = new_user(env)
    web, csrf = web_login(server, name)
    assert web.get(server.url + "/api/v1/me").json()["username"] == name
    missing = web.patch(server.url + "/api/v1/me", json={"display_name": "x"})
    assert missing.status_code == 403 and missing.json()["error"]["code"] == "csrf_failed"
    wrong = web.patch(
        server.url + "/api/v1/me", json={"display_name": "x"}, headers={"X-CSRF-Token": "0" * 64}
    )
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "csrf_failed"
    right = web.patch(
        server.url + "/api/v1/me", json={"display_name": "ok"}, headers={"X-CSRF-Token": csrf}
    )
    assert right.status_code == 200 and right.json()["display_name"] == "ok"
    again = web.get(server.url + "/api/v1/session").json()
    assert again["csrf_token"] == csrf and again["user"]["username"] == name
    rows = audit_rows(
        admin, lambda r: len(r) >= 2, user=name, action="PATCH /api/v1/me", outcome="denied"
    )
    assert all(r["detail"]["error"] == "csrf_failed" and r["detail"]["status"] == 403 for r in rows)


def test_a_session_grants_the_roles_scopes_and_the_api_key_wins_when_both_are_sent(env):
    server, admin = env
    name = new_user(env)
    web, csrf = web_login(server, name)
    headers = {"X-CSRF-Token": csrf}
    made = web.post(server.url + "/api/v1/keys", json={"name": "from the ui"}, headers=headers)
    assert made.status_code == 201 and "admin" not in made.json()["scopes"]
    assert web.get(server.url + "/api/v1/users").status_code == 403
    admin_key = admin.session.headers["Authorization"]
    assert (
        web.get(server.url + "/api/v1/users", headers={"Authorization": admin_key}).status_code
        == 200
    )


def test_logging_out_ends_the_session_and_clears_the_cookie(env):
    server, _admin = env
    name = new_user(env)
    web, csrf = web_login(server, name)
    token = web.cookies["mp_session"]
    assert web.delete(server.url + "/api/v1/session").status_code == 403
    out = web.delete(server.url + "/api/v1/session", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204 and 'mp_session=""' in out.headers["Set-Cookie"]
    stale = requests.get(server.url + "/api/v1/me", cookies={"mp_session": token}, timeout=30)
    assert stale.status_code == 401


def test_an_expired_session_is_refused(env):
    server, _admin = env
    name = new_user(env)
    web, _csrf = web_login(server, name)
    with sqlite3.connect(server.data_dir / "messagepusher.db") as db:
        db.execute(
            "UPDATE web_session SET expires_at = ? WHERE user_id = (SELECT id FROM user WHERE username = ?)",
            (time.time() - 1, name),
        )
    resp = web.get(server.url + "/api/v1/me")
    assert resp.status_code == 401 and "log in again" in resp.json()["error"]["message"]


def test_failed_logins_are_slowed_then_lock_the_account_even_with_the_right_password(env):
    server, admin = env
    name = new_user(env)
    for attempt in range(1, MAX_FAILURES + 1):
        started = time.monotonic()
        resp = login_from(server, next(addresses), name, "wrong-password")
        assert (
            resp.status == 401 and json.loads(resp.data)["error"]["code"] == "invalid_credentials"
        )
        assert time.monotonic() - started >= SLOWDOWN * attempt
    locked = login_from(server, next(addresses), name, PASSWORD)
    assert locked.status == 429 and json.loads(locked.data)["error"]["code"] == "login_locked"
    assert int(locked.headers["Retry-After"]) > 3500
    rows = audit_rows(
        admin, lambda r: len(r) >= MAX_FAILURES + 1, action="POST /api/v1/session", target=name
    )
    errors = [r["detail"]["error"] for r in rows]
    assert errors.count("invalid_credentials") == MAX_FAILURES and errors[0] == "login_locked"
    assert any(r["detail"].get("locked") for r in rows) and all(
        r["outcome"] == "denied" for r in rows
    )


def test_failures_from_one_address_lock_that_address_for_every_account_but_not_others(env):
    server, _admin = env
    attacker = next(addresses)
    victims = [new_user(env) for _ in range(MAX_FAILURES)]
    for victim in victims:
        assert login_from(server, attacker, victim, "wrong-password").status == 401
    bystander = new_user(env)
    assert login_from(server, attacker, bystander, PASSWORD).status == 429
    assert login_from(server, next(addresses), bystander, PASSWORD).status == 200


def test_a_successful_login_clears_the_failures_before_it(env):
    server, _admin = env
    name = new_user(env)
    address = next(addresses)
    for _ in range(MAX_FAILURES - 1):
        assert login_from(server, address, name, "wrong-password").status == 401
    assert login_from(server, address, name, PASSWORD).status == 200
    for _ in range(MAX_FAILURES - 1):
        assert login_from(server, address, name, "wrong-password").status == 401
    assert login_from(server, address, name, PASSWORD).status == 200


def test_wrong_x_confirm_values_count_as_failed_logins_and_lock_the_account(env):
    server, admin = env
    name = new_user(env)
    client = server.client(admin.post(f"/api/v1/keys?user={name}", json={}).json()["key"])
    for _ in range(MAX_FAILURES):
        resp = client.delete("/api/v1/me/totp", headers={"X-Confirm": "guess-guess"})
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "confirmation_required"
    locked = client.delete("/api/v1/me/totp", headers={"X-Confirm": PASSWORD})
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "login_locked"
    assert "Retry-After" in locked.headers
    assert login_from(server, next(addresses), name, PASSWORD).status == 429
    assert server.client(None).get("/healthz").status_code == 200
    assert admin.get("/api/v1/me").status_code == 200, "the admin is not affected"
    assert ADMIN_PASSWORD not in locked.text


# --- the lock arithmetic, with a clock -------------------------------------------------------


def test_a_lock_begins_at_max_failures_and_ends_after_lockout_seconds(db):
    keys = accounts.login_keys("Alice", "10.0.0.1")
    now = 1_000_000.0
    for attempt in range(1, 3):
        assert accounts.record_failure(keys, 3, 60, now=now + attempt) == (attempt, False)
    assert accounts.locked_for(keys, now=now + 2) == 0
    assert accounts.record_failure(keys, 3, 60, now=now + 3) == (3, True)
    assert accounts.locked_for(keys, now=now + 4) == pytest.approx(59)
    assert accounts.locked_for(keys, now=now + 63.5) == 0
    assert accounts.record_failure(keys, 3, 60, now=now + 64) == (1, False), (
        "an expired lock starts a fresh count"
    )


def test_failures_older_than_the_lockout_window_are_forgotten(db):
    keys = accounts.login_keys("bob", "10.0.0.2")
    accounts.record_failure(keys, 3, 60, now=0.0)
    accounts.record_failure(keys, 3, 60, now=10.0)
    assert accounts.record_failure(keys, 3, 60, now=500.0) == (1, False)
    accounts.clear_failures(keys)
    assert accounts.record_failure(keys, 3, 60, now=501.0) == (1, False)
    assert accounts.login_keys("BOB", "x")[0] == keys[0], "usernames count case-insensitively"
