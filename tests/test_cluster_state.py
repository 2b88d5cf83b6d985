"""State that must hold for the whole deployment, not per process: two ordinary servers on one database.

Servers A and B share one SQLite file (and, in the last test, one PostgreSQL schema), which is
what `serve --processes 2` and several hosts amount to: a run-time config change or rollback
through A is in effect on B within 5 s; a per-user rate limit holds for both together within
10 %; a key revoked through A is refused by B at once; a TOTP code used on A is refused on B;
failed logins on A and B count toward one lock-out.
"""

from __future__ import annotations

import itertools
import threading
import time

import pyotp
import pytest
import urllib3
from support.ops import CONFIRM, until
from support.server import ServerProcess

pytestmark = pytest.mark.xdist_group("heavy")

PASSWORD = "cluster-pass-Test-1"
MAX_FAILURES = 4
# The promise of issue 11: a change made through one process is in effect everywhere within
# 5 s. The watcher looks every second, so this is several times what it takes.
PROPAGATION_SECONDS = 5.0
serial = itertools.count(1)
addresses = (f"127.0.1.{n}" for n in range(2, 250))


def pair_env(database_url: str) -> dict[str, str]:
    return {
        "MP_DATABASE__URL": database_url,
        "MP_SECURITY__SECRET_KEY": "cluster-test-shared-secret-key",
        "MP_CHANNEL_POOL__WORKERS": "3",
        "MP_SECURITY__LOGIN__SLOWDOWN_SECONDS": "0",
        "MP_SECURITY__LOGIN__MAX_FAILURES": str(MAX_FAILURES),
        "MP_SECURITY__LOGIN__LOCKOUT_SECONDS": "3600",
        "MP_SECURITY__RATE_LIMIT__PER_KEY_PER_SECOND": "0",
    }


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Servers A and B on one SQLite file (each with its own data dir for logs); admin clients."""
    root = tmp_path_factory.mktemp("cluster")
    env = pair_env(f"sqlite:///{root / 'shared.db'}")
    a = ServerProcess(root / "a", env).start()  # A creates the schema and the admin first
    b = ServerProcess(root / "b", env)
    try:
        b.start()
        key = a.create_key()
        yield a.client(key), b.client(key)
    finally:
        b.stop()
        a.stop()


def new_user(admin, channel: bool = False) -> tuple[str, str]:
    """A fresh user (name, key); with `channel`, a default `none` channel so sends are accepted."""
    name = f"member{next(serial)}"
    made = admin.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    assert made.status_code == 201, made.text
    key = admin.post(f"/api/v1/keys?user={name}", json={"name": "k"})
    assert key.status_code == 201, key.text
    if channel:
        user = admin.server.client(key.json()["key"])
        made = user.post("/api/v1/channels", json={"name": "drop", "type": "none", "default": True})
        assert made.status_code == 201, made.text
    return name, key.json()["key"]


def workers(client) -> int:
    return client.get("/api/v1/admin/status").json()["components"]["channel_pool"]["pool"][
        "max_workers"
    ]


def test_a_config_change_and_its_rollback_through_a_are_in_effect_on_b_within_5_seconds(pair):
    a, b = pair
    assert workers(b) == 3
    before = a.get("/api/v1/admin/config").json()["version"]
    patched = a.patch(
        "/api/v1/admin/config", json={"channel_pool": {"workers": 5}}, headers=CONFIRM
    )
    assert patched.status_code == 200, patched.text
    until(lambda: workers(b) == 5, PROPAGATION_SECONDS, "B's channel pool resized to 5")
    assert b.get("/api/v1/admin/config").json()["version"] == patched.json()["version"]

    back = a.post(f"/api/v1/admin/config/versions/{before}/rollback", headers=CONFIRM)
    assert back.status_code == 200, back.text
    until(lambda: workers(b) == 3, PROPAGATION_SECONDS, "B's channel pool back at 3")
    assert b.get("/api/v1/admin/config").json()["values"]["channel_pool"]["workers"] == 3


def test_changes_made_through_a_and_b_build_on_each_other(pair):
    a, b = pair
    first = a.patch(
        "/api/v1/admin/config", json={"retention": {"messages_days": 41}}, headers=CONFIRM
    )
    assert first.status_code == 200, first.text
    second = b.patch("/api/v1/admin/config", json={"backup": {"keep": 9}}, headers=CONFIRM)
    assert second.status_code == 200, second.text
    assert second.json()["version"] == first.json()["version"] + 1
    assert second.json()["values"]["retention"]["messages_days"] == 41, (
        "B's change kept A's, though B may not have applied it yet"
    )
    assert second.json()["values"]["backup"]["keep"] == 9


def test_a_per_user_rate_limit_holds_for_both_servers_together_within_10_percent(pair):
    a, b = pair
    rate, burst, seconds = 10, 3, 5.0
    patched = a.patch(
        "/api/v1/admin/config",
        json={"security": {"rate_limit": {"per_user_per_second": rate, "per_user_burst": burst}}},
        headers=CONFIRM,
    )
    assert patched.status_code == 200, patched.text
    until(
        lambda: (
            b.get("/api/v1/admin/config").json()["values"]["security"]["rate_limit"][
                "per_user_per_second"
            ]
            == rate
        ),
        PROPAGATION_SECONDS,
        "B runs the new rate limit",
    )
    _name, key = new_user(a, channel=True)
    counts: dict[int, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(6)
    ends: list[float] = []

    def drive(server) -> None:
        client = server.client(key)
        start.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status = client.post("/api/v1/messages", json={"title": "t", "body": "b"}).status_code
            with lock:
                counts[status] = counts.get(status, 0) + 1
        with lock:
            ends.append(time.monotonic())

    threads = [
        threading.Thread(target=drive, args=(server.server,)) for server in (a, b, a, b, a, b)
    ]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = max(ends) - began
    allowed = burst + rate * elapsed
    assert set(counts) <= {202, 429}, counts
    assert counts[429] > counts[202], f"the servers were not driven past the limit: {counts}"
    assert abs(counts[202] - allowed) <= 0.1 * allowed, (
        f"{counts[202]} accepted in {elapsed:.2f}s; the limit allows {allowed:.0f} "
        f"(one bucket per process would allow about {2 * allowed:.0f})"
    )
    reset = a.patch(
        "/api/v1/admin/config", json={"security": {"rate_limit": None}}, headers=CONFIRM
    )
    assert reset.status_code == 200, reset.text


def test_a_key_revoked_through_a_is_refused_by_b_at_once(pair):
    a, b = pair
    _name, key = new_user(a)
    user_on_b = b.server.client(key)
    assert user_on_b.get("/api/v1/me").status_code == 200
    assert user_on_b.get("/api/v1/me").status_code == 200  # now in B's key cache
    key_id = a.server.client(key).get("/api/v1/keys").json()["items"][0]["id"]
    disabled = a.patch(f"/api/v1/keys/{key_id}", json={"enabled": False})
    assert disabled.status_code == 200, disabled.text
    refused = user_on_b.get("/api/v1/me")
    assert refused.status_code == 401 and "disabled" in refused.json()["error"]["message"]

    enabled = a.patch(f"/api/v1/keys/{key_id}", json={"enabled": True})
    assert enabled.status_code == 200, enabled.text
    assert user_on_b.get("/api/v1/me").status_code == 200
    assert a.delete(f"/api/v1/keys/{key_id}").status_code == 204
    assert user_on_b.get("/api/v1/me").status_code == 401


def test_a_totp_code_used_on_a_is_refused_on_b(pair):
    a, b = pair
    _name, key = new_user(a)
    on_a, on_b = a.server.client(key), b.server.client(key)
    enrolled = on_a.post("/api/v1/me/totp")
    assert enrolled.status_code == 201, enrolled.text
    totp = pyotp.TOTP(enrolled.json()["secret"])
    now = time.time()
    code = totp.at(now)
    assert on_a.post("/api/v1/me/totp/confirm", json={"code": code}).status_code == 200
    replayed = on_b.delete("/api/v1/me/totp", headers={"X-Confirm": code})
    assert replayed.status_code == 403, replayed.text
    assert replayed.json()["error"]["details"]["reason"] == "totp_code_used"
    fresh = on_b.delete("/api/v1/me/totp", headers={"X-Confirm": totp.at(now, counter_offset=1)})
    assert fresh.status_code == 204, fresh.text


def login_from(client, address: str, username: str, password: str) -> int:
    """POST /api/v1/session to the client's server from a chosen loopback source address."""
    pool = urllib3.HTTPConnectionPool(
        "127.0.0.1", client.server.port, source_address=(address, 0), retries=False
    )
    resp = pool.request(
        "POST", "/api/v1/session", json={"username": username, "password": password}
    )
    pool.close()
    return resp.status


def test_failed_logins_on_a_and_b_count_toward_one_lock_out(pair):
    a, b = pair
    name, _key = new_user(a)
    for attempt in range(MAX_FAILURES):
        server = (a, b)[attempt % 2]
        assert login_from(server, next(addresses), name, "wrong-password") == 401
    assert login_from(a, next(addresses), name, PASSWORD) == 429
    assert login_from(b, next(addresses), name, PASSWORD) == 429


def test_on_postgresql_a_change_and_a_revocation_through_a_reach_b(server_factory, postgres_url):
    url, _schema = postgres_url
    env = pair_env(url)
    a = server_factory(env)
    b = server_factory(env)
    key = a.create_key()
    admin_a, admin_b = a.client(key), b.client(key)
    patched = admin_a.patch(
        "/api/v1/admin/config", json={"channel_pool": {"workers": 4}}, headers=CONFIRM
    )
    assert patched.status_code == 200, patched.text
    until(lambda: workers(admin_b) == 4, PROPAGATION_SECONDS, "B's channel pool resized to 4")

    _name, user_key = new_user(admin_a)
    user_on_b = b.client(user_key)
    assert user_on_b.get("/api/v1/me").status_code == 200
    key_id = a.client(user_key).get("/api/v1/keys").json()["items"][0]["id"]
    assert admin_a.delete(f"/api/v1/keys/{key_id}").status_code == 204
    assert user_on_b.get("/api/v1/me").status_code == 401

    name, _ = new_user(admin_a)
    for attempt in range(MAX_FAILURES):
        target = (admin_a, admin_b)[attempt % 2]
        assert login_from(target, next(addresses), name, "wrong-password") == 401
    assert login_from(admin_b, next(addresses), name, PASSWORD) == 429


def test_failed_logins_recorded_at_one_moment_through_many_connections_all_count(postgres_url):
    """On PostgreSQL a read-then-write of the failure row would lose some of them."""
    from messagepusher.accounts import users as accounts
    from messagepusher.supervisor.db import open_database
    from messagepusher.supervisor.migrations import migrate
    from messagepusher.supervisor.models import LoginFailure

    database = open_database(postgres_url[0])
    database.connect()
    migrate(database)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def fail_five_times() -> None:
        start.wait()
        try:
            for _ in range(5):
                accounts.record_failure(["user:target"], 1000, 3600)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=fail_five_times) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        assert LoginFailure.get_by_id("user:target").failures == 40
    finally:
        database.close_all()
