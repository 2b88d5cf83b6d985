"""API keys end to end: creation (shown once), listing without secrets, scopes, expiry, disable, delete.

Every change must apply to the very next request, although key look-ups are cached.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from fakes.sink import Sink
from support.ops import webhook
from support.server import ServerProcess

USER_PASSWORD = "keys-user-pass-1"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    sink = Sink()
    server = ServerProcess(
        tmp_path_factory.mktemp("keys"),
        {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_SECURITY__KEY_CACHE_SECONDS": "60"},
    ).start()
    admin = server.client(server.create_key())
    made = admin.post("/api/v1/users", json={"username": "kim", "password": USER_PASSWORD})
    assert made.status_code == 201, made.text
    kim = server.client(
        admin.post("/api/v1/keys?user=kim", json={"name": "kim's manager"}).json()["key"]
    )
    webhook(kim, sink.url + "/in", default=True)
    yield server, admin, kim
    server.stop()
    sink.close()


def in_future(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def send(server: ServerProcess, key: str) -> int:
    return server.client(key).post("/api/v1/messages", json={"title": "hi"}).status_code


def key_row(kim, key_id: int) -> dict:
    return kim.get(f"/api/v1/keys/{key_id}").json()


def test_a_key_works_until_disabled_works_again_when_enabled_and_never_after_delete(env):
    server, _admin, kim = env
    created = kim.post("/api/v1/keys", json={"name": "ci", "scopes": ["messages:send"]})
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {
        "id",
        "user_id",
        "key",
        "prefix",
        "name",
        "scopes",
        "enabled",
        "created_at",
        "expires_at",
        "last_used_at",
    }
    assert body["key"].startswith(f"mp_{body['prefix']}_") and body["scopes"] == ["messages:send"]
    assert body["enabled"] is True and body["last_used_at"] is None
    key, key_id = body["key"], body["id"]

    assert send(server, key) == 202
    first_use = key_row(kim, key_id)["last_used_at"]
    assert first_use is not None

    assert kim.patch(f"/api/v1/keys/{key_id}", json={"enabled": False}).json()["enabled"] is False
    refused = server.client(key).post("/api/v1/messages", json={"title": "hi"})
    assert refused.status_code == 401 and "disabled" in refused.json()["error"]["message"]

    assert kim.patch(f"/api/v1/keys/{key_id}", json={"enabled": True}).json()["enabled"] is True
    assert send(server, key) == 202
    assert key_row(kim, key_id)["last_used_at"] > first_use

    assert kim.delete(f"/api/v1/keys/{key_id}").status_code == 204
    assert send(server, key) == 401
    assert kim.get(f"/api/v1/keys/{key_id}").status_code == 404


def test_listing_keys_shows_prefix_and_name_but_never_the_secret_or_its_hash(env):
    _server, _admin, kim = env
    created = kim.post("/api/v1/keys", json={"name": "listed"}).json()
    secret = created["key"].split("_", 2)[2]
    for resp in (kim.get("/api/v1/keys"), kim.get(f"/api/v1/keys/{created['id']}")):
        assert resp.status_code == 200
        assert (
            secret not in resp.text and "secret_hash" not in resp.text and '"key"' not in resp.text
        )
    listed = {k["id"]: k for k in kim.get("/api/v1/keys").json()["items"]}
    assert (
        listed[created["id"]]["prefix"] == created["prefix"]
        and listed[created["id"]]["name"] == "listed"
    )


def test_a_key_without_scopes_gets_all_its_role_allows_and_cannot_grant_what_it_lacks(env):
    server, _admin, kim = env
    full = kim.post("/api/v1/keys", json={"name": "full"}).json()
    assert full["scopes"] == sorted(
        ["messages:send", "messages:read", "channels:read", "channels:write", "keys:manage"]
    )
    narrow = server.client(
        kim.post("/api/v1/keys", json={"scopes": ["keys:manage", "messages:read"]}).json()["key"]
    )
    refused = narrow.post("/api/v1/keys", json={"scopes": ["messages:send"]})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "scope_not_held", (
        refused.text
    )
    assert narrow.post("/api/v1/keys", json={}).json()["scopes"] == ["keys:manage", "messages:read"]
    stronger = narrow.patch(f"/api/v1/keys/{full['id']}", json={"enabled": True})
    assert stronger.status_code == 403 and stronger.json()["error"]["code"] == "scope_not_held"
    assert narrow.delete(f"/api/v1/keys/{full['id']}").status_code == 204, (
        "revoking a stronger key is allowed"
    )
    admin_scope = kim.post("/api/v1/keys", json={"scopes": ["admin"]})
    assert (
        admin_scope.status_code == 422
        and "needs role admin" in admin_scope.json()["error"]["message"]
    )
    unknown = kim.post("/api/v1/keys", json={"scopes": ["messages:delete"]})
    assert unknown.status_code == 422 and "'messages:delete'" in unknown.json()["error"]["message"]


def test_a_key_lacking_the_scope_gets_403_naming_the_scope_and_a_rescope_applies_at_once(env):
    server, _admin, kim = env
    created = kim.post("/api/v1/keys", json={"scopes": ["messages:send", "messages:read"]}).json()
    client = server.client(created["key"])
    assert client.get("/api/v1/messages").status_code == 200
    lacking = client.get("/api/v1/channels")
    assert lacking.status_code == 403 and lacking.json()["error"]["details"] == {
        "required_scope": "channels:read"
    }
    assert (
        kim.patch(f"/api/v1/keys/{created['id']}", json={"scopes": ["messages:read"]}).status_code
        == 200
    )
    assert send(server, created["key"]) == 403
    assert client.get("/api/v1/messages").status_code == 200


def test_an_expiry_must_lie_ahead_and_a_key_stops_working_when_it_passes(env):
    server, _admin, kim = env
    past = kim.post("/api/v1/keys", json={"expires_at": in_future(-60)})
    assert past.status_code == 422 and past.json()["error"]["details"][0]["field"] == "expires_at"
    naive = kim.post("/api/v1/keys", json={"expires_at": "2030-01-01T00:00:00"})
    assert naive.status_code == 422
    # Five seconds: the next request must still find it valid on a machine several times slower.
    soon = kim.post("/api/v1/keys", json={"expires_at": in_future(5.0)}).json()
    assert soon["expires_at"] is not None and send(server, soon["key"]) == 202
    deadline = time.monotonic() + 30
    while send(server, soon["key"]) != 401:
        assert time.monotonic() < deadline, "the key still worked 25 s after it expired"
        time.sleep(0.1)
    later = kim.post("/api/v1/keys", json={}).json()
    assert send(server, later["key"]) == 202
    assert (
        kim.patch(f"/api/v1/keys/{later['id']}", json={"expires_at": in_future(-1)}).status_code
        == 200
    )
    expired = server.client(later["key"]).post("/api/v1/messages", json={"title": "hi"})
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    assert (
        kim.patch(f"/api/v1/keys/{later['id']}", json={"expires_at": None}).json()["expires_at"]
        is None
    )
    assert send(server, later["key"]) == 202


def test_malformed_unknown_and_wrong_secret_keys_are_401_with_a_bearer_challenge(env):
    server, _admin, kim = env
    real = kim.post("/api/v1/keys", json={}).json()["key"]
    tampered = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    for presented in ("not-a-key", "mp_000000000000_nothing", tampered):
        resp = server.client(presented).get("/api/v1/messages")
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer"), (
            presented
        )
    basic = server.client(None).get("/api/v1/messages", headers={"Authorization": "Basic a2ltOnB3"})
    assert basic.status_code == 401


def test_an_admin_manages_another_users_keys_and_a_user_cannot_see_or_touch_them(env):
    server, admin, kim = env
    made = admin.post("/api/v1/users", json={"username": "lee", "password": "lee-pass-Test-1"})
    assert made.status_code == 201
    lee_key = admin.post("/api/v1/keys?user=lee", json={"name": "lee's"}).json()
    assert lee_key["user_id"] == made.json()["id"] and "admin" not in lee_key["scopes"]
    assert kim.get(f"/api/v1/keys/{lee_key['id']}").status_code == 404
    assert kim.patch(f"/api/v1/keys/{lee_key['id']}", json={"enabled": False}).status_code == 404
    assert kim.delete(f"/api/v1/keys/{lee_key['id']}").status_code == 404
    assert all(k["id"] != lee_key["id"] for k in kim.get("/api/v1/keys?user=lee").json()["items"])
    assert admin.patch(f"/api/v1/keys/{lee_key['id']}", json={"enabled": False}).status_code == 200
    assert server.client(lee_key["key"]).get("/api/v1/messages").status_code == 401
