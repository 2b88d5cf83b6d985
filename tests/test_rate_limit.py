"""Rate limits: per-key and per-user token buckets on message sending, answered 429 with Retry-After.

A refused request stores nothing; reads are never limited; limits are read live from the settings.
"""

from __future__ import annotations

import time
from itertools import count
from types import SimpleNamespace

import pytest
from fakes.sink import Sink
from support.ops import webhook
from support.server import ServerProcess

from messagepusher.accounts.ratelimit import BucketMap
from messagepusher.http.errors import APIError
from messagepusher.http.routes import Op
from messagepusher.http.throttle import ThrottleMiddleware
from messagepusher.supervisor.config import Settings

KEY_BURST, USER_BURST = 3, 5
serial = count(1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    sink = Sink()
    server = ServerProcess(
        tmp_path_factory.mktemp("ratelimit"),
        {
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_SECURITY__RATE_LIMIT__PER_KEY_PER_SECOND": "0.01",
            "MP_SECURITY__RATE_LIMIT__PER_KEY_BURST": str(KEY_BURST),
            "MP_SECURITY__RATE_LIMIT__PER_USER_PER_SECOND": "0.01",
            "MP_SECURITY__RATE_LIMIT__PER_USER_BURST": str(USER_BURST),
        },
    ).start()
    yield server, server.client(server.create_key()), sink
    server.stop()
    sink.close()


def sender(env) -> tuple[str, object, object]:
    """A fresh user with a default webhook channel; returns (name, key client, a second key client)."""
    server, admin, sink = env
    name = f"sender{next(serial)}"
    assert (
        admin.post(
            "/api/v1/users", json={"username": name, "password": "sender-pass-1"}
        ).status_code
        == 201
    )
    first, second = (
        server.client(admin.post(f"/api/v1/keys?user={name}", json={}).json()["key"])
        for _ in range(2)
    )
    webhook(first, sink.url + "/in", default=True)
    return name, first, second


def titles(client) -> list[str]:
    return [m["title"] for m in client.get("/api/v1/messages?limit=200").json()["items"]]


def test_a_send_over_the_keys_burst_gets_429_with_retry_after_and_nothing_is_stored(env):
    _server, admin, _sink = env
    name, client, _other = sender(env)
    for n in range(KEY_BURST):
        assert client.post("/api/v1/messages", json={"title": f"ok {n}"}).status_code == 202
    refused = client.post("/api/v1/messages", json={"title": "refused one"})
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and error["details"]["limit"] == "per_key"
    assert "security.rate_limit.per_key_per_second" in error["message"]
    retry_after = refused.headers["Retry-After"]
    assert (
        retry_after.isdigit()
        and int(retry_after) >= 1
        and error["details"]["retry_after"] == int(retry_after)
    )
    assert sorted(titles(client)) == [f"ok {n}" for n in range(KEY_BURST)]
    assert client.get("/api/v1/messages").status_code == 200, "reads are not limited"
    deadline = time.monotonic() + 30
    while True:
        rows = admin.get(
            f"/api/v1/admin/audit?user={name}&action=POST /api/v1/messages&outcome=denied"
        ).json()["items"]
        if rows:
            break
        assert time.monotonic() < deadline, "no audit row for the refused send"
        time.sleep(0.1)
    assert rows[0]["detail"]["error"] == "rate_limited" and rows[0]["detail"]["status"] == 429


def test_keys_of_one_user_share_the_users_budget(env):
    _server, _admin, _sink = env
    _name, first, second = sender(env)
    for n in range(KEY_BURST):
        assert first.post("/api/v1/messages", json={"title": f"first {n}"}).status_code == 202
    for n in range(USER_BURST - KEY_BURST):
        assert second.post("/api/v1/messages", json={"title": f"second {n}"}).status_code == 202
    refused = second.post("/api/v1/messages", json={"title": "over the user's budget"})
    assert refused.status_code == 429 and refused.json()["error"]["details"]["limit"] == "per_user"
    assert len(titles(first)) == USER_BURST


def test_the_compat_push_endpoint_draws_from_the_same_buckets(env):
    server, _admin, _sink = env
    name, client, _other = sender(env)
    token = client.session.headers["Authorization"].split()[1]
    for n in range(KEY_BURST):
        assert client.post("/api/v1/messages", json={"title": f"api {n}"}).status_code == 202
    pushed = server.client(None).get(f"/push/{name}", params={"token": token, "title": "compat"})
    assert pushed.status_code == 429 and int(pushed.headers["Retry-After"]) >= 1
    assert "compat" not in titles(client)


# --- the middleware itself, with a clock ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def fake_request(op: Op, key_id: int | None = 7, user_id: int = 1):
    principal = SimpleNamespace(key_id=key_id, user_id=user_id, username="u")
    return SimpleNamespace(context=SimpleNamespace(op=op, principal=principal))


SEND = Op("messages:send", "send")


def middleware(**limits) -> tuple[ThrottleMiddleware, SimpleNamespace, Clock]:
    settings = Settings()
    for name, value in limits.items():
        setattr(settings.security.rate_limit, name, value)
    runtime = SimpleNamespace(settings=settings)
    clock = Clock()
    return ThrottleMiddleware(runtime, BucketMap(now=clock)), runtime, clock


def allowed(mw: ThrottleMiddleware, req) -> bool:
    try:
        mw.process_resource(req, None, None, {})
    except APIError as exc:
        assert exc.code == "rate_limited"
        return False
    return True


def test_a_bucket_refills_at_its_rate_and_retry_after_is_whole_seconds():
    mw, _runtime, clock = middleware(per_key_per_second=0.5, per_key_burst=2, per_user_per_second=0)
    req = fake_request(SEND)
    assert allowed(mw, req) and allowed(mw, req) and not allowed(mw, req)
    with pytest.raises(APIError) as refused:
        mw.process_resource(req, None, None, {})
    assert refused.value.headers["Retry-After"] == "2"
    clock.t += 2.0
    assert allowed(mw, req) and not allowed(mw, req)


def test_a_rate_of_zero_switches_a_limit_off_and_changed_settings_apply_at_once():
    mw, runtime, _clock = middleware(per_key_per_second=0, per_user_per_second=0)
    req = fake_request(SEND)
    assert all(allowed(mw, req) for _ in range(1000))
    runtime.settings.security.rate_limit.per_user_per_second = 1
    runtime.settings.security.rate_limit.per_user_burst = 1
    assert allowed(mw, req) and not allowed(mw, req)


def test_only_sending_operations_are_limited():
    mw, _runtime, _clock = middleware(per_key_per_second=1, per_key_burst=1)
    read = fake_request(Op("messages:read", "list"))
    assert all(allowed(mw, read) for _ in range(50))
    assert allowed(mw, fake_request(SEND)) and not allowed(mw, fake_request(SEND))
    assert allowed(mw, fake_request(SEND, key_id=8, user_id=2)), (
        "another user's key has its own buckets"
    )
