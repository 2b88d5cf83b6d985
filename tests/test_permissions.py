"""The permission matrix over every endpoint of /openapi.json, and second verification (X-Confirm).

Each operation is called as eight different callers; the status each gets follows from the op's
x-permission, and no answer to another user ever carries the owner's data.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from itertools import count

import pyotp
import pytest
from fakes.sink import Sink
from support.server import ADMIN_PASSWORD, ServerProcess

MARK = "zqownermark"
OWNER_PASSWORD = "owner-pass-Test-1"
OTHER_PASSWORD = "other-pass-Test-1"
SCOPES = ("messages:send", "messages:read", "channels:read", "channels:write", "keys:manage")
OBJECT_PARAMS = {
    "message_id": "message",
    "channel_id": "channel",
    "key_id": "key",
    "user_id": "user",
    "username": "username",
    "schedule_id": "schedule",
    "hook_id": "hook",
}
PUBLIC, AUTHENTICATED, ADMIN = "public", "authenticated", "admin"
serial = count(1)


class World:
    """One server with an admin, an owner with data, another user, and keys in every state."""

    def __init__(self, server: ServerProcess, sink: Sink):
        self.server, self.sink = server, sink
        self.admin = server.client(server.create_key())
        self.owner_id = self._user("owner", OWNER_PASSWORD)
        self.other_id = self._user("other", OTHER_PASSWORD)
        self.owner_key = self._key("owner")
        self.owner = server.client(self.owner_key)
        self.other = server.client(self._key("other"))
        self.secrets = {self.owner_key}
        self.lacking = {
            scope: server.client(self._key("owner", [s for s in SCOPES if s != scope]))
            for scope in SCOPES
        }
        self.deleted = self._key_in_state("owner", "delete", None)
        self.disabled = self._key_in_state("owner", "patch", {"enabled": False})
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        self.expired = self._key_in_state("owner", "patch", {"expires_at": past})
        self.objects()  # the owner's data that other callers must never see

    def _user(self, name: str, password: str) -> int:
        display = f"{MARK} {name}" if name == "owner" else name
        made = self.admin.post(
            "/api/v1/users", json={"username": name, "password": password, "display_name": display}
        )
        assert made.status_code == 201, made.text
        return made.json()["id"]

    def _key(self, user: str, scopes: list[str] | None = None) -> str:
        body = {"name": f"{MARK if user == 'owner' else user}-key-{next(serial)}"} | (
            {"scopes": scopes} if scopes is not None else {}
        )
        made = self.admin.post(f"/api/v1/keys?user={user}", json=body)
        assert made.status_code == 201, made.text
        return made.json()["key"]

    def _key_in_state(self, user: str, how: str, body: dict | None):
        plaintext = self._key(user)
        key_id = self.admin.get(f"/api/v1/keys?user={user}&limit=1").json()["items"][0]["id"]
        changed = self.admin.request(how.upper(), f"/api/v1/keys/{key_id}", json=body)
        assert changed.status_code in (200, 204), changed.text
        return self.server.client(plaintext)

    def objects(self) -> dict[str, str]:
        """Fresh objects of the owner: a channel, a message through it, a key; ids by param kind."""
        n = next(serial)
        channel = self.owner.post(
            "/api/v1/channels",
            json={
                "name": f"{MARK}-chan-{n}",
                "type": "webhook",
                "config": {"url": self.sink.url + "/in"},
            },
        )
        assert channel.status_code == 201, channel.text
        message = self.owner.post(
            "/api/v1/messages",
            json={"title": f"{MARK}-title-{n}", "channels": [channel.json()["id"]]},
        )
        assert message.status_code == 202, message.text
        key = self.owner.post("/api/v1/keys", json={"name": f"{MARK}-key-{n}"})
        assert key.status_code == 201, key.text
        self.secrets.add(key.json()["key"])
        schedule = self.owner.post(
            "/api/v1/schedules",
            json={
                "name": f"{MARK}-schedule-{n}",
                "every_seconds": 86_400,
                "message": {"title": f"{MARK}-recurring-{n}", "channels": [channel.json()["id"]]},
            },
        )
        assert schedule.status_code == 201, schedule.text
        hook = self.owner.post(
            "/api/v1/hooks",
            json={"name": f"{MARK}-hook-{n}", "template": {"title": "{{ payload.x }}"}},
        )
        assert hook.status_code == 201, hook.text
        self.secrets.add(hook.json()["url"].rsplit("/", 1)[-1])
        return {
            "message": str(message.json()["id"]),
            "channel": str(channel.json()["id"]),
            "key": str(key.json()["id"]),
            "user": str(self.owner_id),
            "username": "owner",
            "schedule": str(schedule.json()["id"]),
            "hook": str(hook.json()["id"]),
        }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sink = Sink()
    server = ServerProcess(
        tmp_path_factory.mktemp("permissions"),
        {
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_SECURITY__LOGIN__SLOWDOWN_SECONDS": "0",
            "MP_SECURITY__LOGIN__MAX_FAILURES": "1000",
        },
    ).start()
    yield World(server, sink)
    server.stop()
    sink.close()


def operations(world: World) -> list[tuple[str, str, dict]]:
    doc = world.owner.get("/openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
    ]


def fill(path: str, ids: dict[str, str]) -> str:
    """The path with each {param} replaced by the id of the object it names, or 1 when unknown."""
    return re.sub(r"{(\w+)}", lambda m: ids.get(OBJECT_PARAMS.get(m.group(1), ""), "1"), path)


# A valid body for each operation that takes one, and what the owner gets for it (None: the
# answer depends on state, such as a TOTP code, so only "allowed and no 5xx" is checked). With
# `{}` most calls would stop at validation (422) and the handler behind it would go untested.
BODIES = {
    ("POST", "/api/v1/messages"): (
        lambda w, ids: {"title": "permission check", "channels": [int(ids["channel"])]},
        202,
    ),
    ("POST", "/api/v1/channels"): (
        lambda w, ids: {
            "name": f"perm-{next(serial)}",
            "type": "webhook",
            "config": {"url": w.sink.url + "/p"},
        },
        201,
    ),
    ("PATCH", "/api/v1/channels/{channel_id}"): (lambda w, ids: {"enabled": True}, 200),
    ("POST", "/api/v1/users"): (
        lambda w, ids: {"username": f"perm{next(serial)}", "password": "perm-pass-1234"},
        403,
    ),
    ("PATCH", "/api/v1/users/{user_id}"): (lambda w, ids: {"email": "owner@example.com"}, 403),
    ("PATCH", "/api/v1/me"): (lambda w, ids: {"email": "me@example.com"}, 200),
    ("POST", "/api/v1/me/totp/confirm"): (lambda w, ids: {"code": "000000"}, None),
    # A right password would leave a session cookie in the caller's client and make it the owner.
    ("POST", "/api/v1/session"): (
        lambda w, ids: {"username": "owner", "password": "not-the-password-1"},
        401,
    ),
    ("POST", "/api/v1/keys"): (
        lambda w, ids: {"name": f"perm-{next(serial)}", "scopes": ["messages:send"]},
        201,
    ),
    ("PATCH", "/api/v1/keys/{key_id}"): (lambda w, ids: {"name": f"{MARK}-renamed"}, 200),
    ("PATCH", "/api/v1/admin/config"): (lambda w, ids: {"logging": {"level": "INFO"}}, 403),
    ("PATCH", "/api/v1/messages/{message_id}"): (lambda w, ids: {"body": "edited"}, 200),
    ("POST", "/api/v1/schedules"): (
        lambda w, ids: {
            "name": f"perm-{next(serial)}",
            "every_seconds": 86_400,
            "message": {"title": "permission check", "channels": [int(ids["channel"])]},
        },
        201,
    ),
    ("PATCH", "/api/v1/schedules/{schedule_id}"): (lambda w, ids: {"enabled": False}, 200),
    ("POST", "/api/v1/hooks"): (
        lambda w, ids: {"name": f"perm-{next(serial)}", "preset": "alertmanager"},
        201,
    ),
    ("PATCH", "/api/v1/hooks/{hook_id}"): (lambda w, ids: {"priority": 4}, 200),
    ("POST", "/api/v1/hooks/{hook_id}/preview"): (lambda w, ids: {"payload": {"x": "y"}}, 200),
    ("POST", "/api/v1/tasks/retry"): (lambda w, ids: {"state": "dead", "limit": 10}, 403),
}


def call(world: World, client, method: str, path: str, ids: dict[str, str]):
    url = fill(path, ids)
    make = BODIES.get((method, path), (lambda w, i: {}, None))[0]
    body = {"json": make(world, ids)} if method in ("POST", "PATCH", "PUT") else {}
    resp = client.request(method, url, stream=True, **body)
    if resp.headers.get("Content-Type", "").startswith("text/event-stream"):
        # An event stream never ends by itself: its status and first chunk are the answer.
        resp._content = next(resp.iter_content(chunk_size=None), b"")
        resp.close()
    return resp


def allowed(resp, op: dict) -> bool:
    """Past authentication and permission without failing: no 401/403/5xx, or the X-Confirm demand."""
    if resp.status_code >= 500:
        return False
    if resp.status_code not in (401, 403):
        return True
    mentions = "X-Confirm" in op.get("description", "") + op["summary"]
    return mentions and resp.json()["error"]["code"] == "confirmation_required"


def owned_item(path: str) -> bool:
    params = re.findall(r"{(\w+)}", path)
    return bool(params) and all(p in OBJECT_PARAMS for p in params)


def no_owner_data(world: World, resp) -> bool:
    return MARK not in resp.text and not any(secret in resp.text for secret in world.secrets)


def test_every_endpoint_answers_each_kind_of_caller_as_its_permission_says(world):
    ops = operations(world)
    assert {
        ("POST", "/api/v1/messages"),
        ("GET", "/api/v1/users/{user_id}"),
        ("DELETE", "/api/v1/keys/{key_id}"),
    } <= {(m, p) for m, p, _ in ops}
    anonymous = world.server.client(None)
    failures: list[str] = []

    def expect(ok: bool, who: str, method: str, path: str, resp) -> None:
        if not ok:
            failures.append(f"{who} {method} {path} -> {resp.status_code} {resp.text[:200]}")

    takes_a_body = {(m, p) for m, p, op in ops if "requestBody" in op}
    assert takes_a_body <= set(BODIES), f"give these a valid body: {takes_a_body - set(BODIES)}"
    for method, path, op in ops:
        permission = op["x-permission"]
        ids = world.objects() if re.search(r"{\w+}", path) or (method, path) in BODIES else {}
        if permission == PUBLIC:
            # Public routes may check a credential of their own (the compat /push takes a token in
            # the body), so only the absence of failures and of the owner's data is asserted.
            for who, client in (
                ("anonymous", anonymous),
                ("deleted key", world.deleted),
                ("other user", world.other),
                ("owner", world.owner),
                ("admin", world.admin),
            ):
                resp = call(world, client, method, path, ids)
                expect(resp.status_code < 500, who, method, path, resp)
                if who != "owner":
                    expect(no_owner_data(world, resp), f"{who} (data)", method, path, resp)
            continue
        for who, client in (
            ("anonymous", anonymous),
            ("deleted key", world.deleted),
            ("disabled key", world.disabled),
            ("expired key", world.expired),
        ):
            resp = call(world, client, method, path, ids)
            expect(resp.status_code == 401, who, method, path, resp)
            expect(no_owner_data(world, resp), f"{who} (data)", method, path, resp)
        if permission != AUTHENTICATED:
            lacking = world.owner if permission == ADMIN else world.lacking[permission]
            resp = call(world, lacking, method, path, ids)
            expect(
                resp.status_code == 403 and resp.json()["error"]["code"] != "confirmation_required",
                "key lacking the scope",
                method,
                path,
                resp,
            )
        resp = call(world, world.other, method, path, ids)
        if permission == ADMIN:
            expect(resp.status_code == 403, "other user", method, path, resp)
        elif owned_item(path):
            expect(resp.status_code == 404, "other user", method, path, resp)
        else:
            expect(allowed(resp, op), "other user", method, path, resp)
        expect(no_owner_data(world, resp), "other user (data)", method, path, resp)
        resp = call(world, world.owner, method, path, ids)
        owner_gets = BODIES.get((method, path), (None, None))[1]
        if owner_gets is not None:
            expect(
                resp.status_code == owner_gets, f"owner (expected {owner_gets})", method, path, resp
            )
        if permission == ADMIN:
            expect(resp.status_code == 403, "owner", method, path, resp)
        else:
            expect(
                allowed(resp, op) and not (owned_item(path) and resp.status_code == 404),
                "owner",
                method,
                path,
                resp,
            )
        ids = world.objects() if ids else ids
        resp = call(world, world.admin, method, path, ids)
        expect(
            allowed(resp, op) and not (owned_item(path) and resp.status_code == 404),
            "admin",
            method,
            path,
            resp,
        )
    assert not failures, "\n".join(failures)


def test_no_method_outside_the_document_is_served_on_any_of_its_paths(world):
    """A responder the route table does not list would also escape its permission check."""
    listed: dict[str, set[str]] = {}
    for method, path, _op in operations(world):
        listed.setdefault(path, set()).add(method)
    served = []
    for path, methods in listed.items():
        ids = world.objects() if re.search(r"{\w+}", path) else {}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - methods:
            resp = world.admin.request(method, fill(path, ids), json={})
            if resp.status_code != 405:
                served.append(f"{method} {path} -> {resp.status_code} {resp.text[:120]}")
    assert not served, "\n".join(served)


def test_an_admin_sees_one_users_rows_with_the_user_parameter_and_a_user_never_does(world):
    world.objects()
    for collection in ("/api/v1/messages", "/api/v1/channels", "/api/v1/keys"):
        mine = world.admin.get(f"{collection}?user=owner").json()["items"]
        assert mine and all(item["user_id"] == world.owner_id for item in mine), collection
        theirs = world.other.get(f"{collection}?user=owner")
        assert theirs.status_code == 200 and no_owner_data(world, theirs), collection
        assert all(item["user_id"] == world.other_id for item in theirs.json()["items"]), collection


# --- second verification ---------------------------------------------------------------------


def _victim(world: World) -> str:
    made = world.admin.post(
        "/api/v1/users", json={"username": f"victim{next(serial)}", "password": "victim-pass-1"}
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _enroll_totp(client) -> pyotp.TOTP:
    """Enroll and turn TOTP on; this uses up the current code, so confirm with `_next_code` after."""
    enrolled = client.post("/api/v1/me/totp")
    assert enrolled.status_code == 201, enrolled.text
    totp = pyotp.TOTP(enrolled.json()["secret"])
    assert client.post("/api/v1/me/totp/confirm", json={"code": totp.now()}).status_code == 200
    return totp


def _next_code(totp: pyotp.TOTP) -> str:
    """The next 30 s step's code: unused, and accepted within the clock-drift window."""
    return totp.at(time.time(), counter_offset=1)


def _key_id(world: World, scopes: list[str]) -> str:
    made = world.admin.post("/api/v1/keys", json={"name": "plain", "scopes": scopes})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


# Each case: (name, a function making (method, path, body) on fresh objects, the status on success).
SENSITIVE = [
    ("delete a user", lambda w: ("DELETE", f"/api/v1/users/{_victim(w)}", None), 200),
    ("change a role", lambda w: ("PATCH", f"/api/v1/users/{_victim(w)}", {"role": "admin"}), 200),
    (
        "reset a password",
        lambda w: ("PATCH", f"/api/v1/users/{_victim(w)}", {"password": "reset-pass-1"}),
        200,
    ),
    (
        "create an admin account",
        lambda w: (
            "POST",
            "/api/v1/users",
            {"username": f"boss{next(serial)}", "password": "boss-pass-1", "role": "admin"},
        ),
        201,
    ),
    ("create an admin key", lambda w: ("POST", "/api/v1/keys", {"name": "root"}), 201),
    (
        "give a key the admin scope",
        lambda w: (
            "PATCH",
            f"/api/v1/keys/{_key_id(w, ['messages:send'])}",
            {"scopes": ["admin", "messages:send"]},
        ),
        200,
    ),
]


@pytest.mark.parametrize("name, make, success", SENSITIVE, ids=[c[0] for c in SENSITIVE])
def test_a_sensitive_operation_needs_the_password_or_a_totp_code_in_x_confirm(
    world, name, make, success
):
    method, path, body = make(world)
    for header in (None, "wrong-password", "123"):
        resp = world.admin.request(
            method, path, json=body, headers={"X-Confirm": header} if header else {}
        )
        assert (
            resp.status_code == 403 and resp.json()["error"]["code"] == "confirmation_required"
        ), (name, header, resp.text)
    resp = world.admin.request(method, path, json=body, headers={"X-Confirm": ADMIN_PASSWORD})
    assert resp.status_code == success, (name, resp.text)
    totp = _enroll_totp(world.admin)
    try:
        method, path, body = make(world)
        stale = totp.at(time.time() - 300)
        resp = world.admin.request(method, path, json=body, headers={"X-Confirm": stale})
        assert (
            resp.status_code == 403 and resp.json()["error"]["code"] == "confirmation_required"
        ), resp.text
        resp = world.admin.request(method, path, json=body, headers={"X-Confirm": _next_code(totp)})
        assert resp.status_code == success, (name, resp.text)
    finally:
        assert (
            world.admin.delete("/api/v1/me/totp", headers={"X-Confirm": ADMIN_PASSWORD}).status_code
            == 204
        )


def test_removing_totp_needs_x_confirm_and_takes_the_password_or_a_current_code(world):
    totp = _enroll_totp(world.owner)
    for header in (None, "wrong-password", totp.at(time.time() - 300)):
        resp = world.owner.delete(
            "/api/v1/me/totp", headers={"X-Confirm": header} if header else {}
        )
        assert (
            resp.status_code == 403 and resp.json()["error"]["code"] == "confirmation_required"
        ), resp.text
    assert world.owner.get("/api/v1/me").json()["totp_enabled"] is True
    assert (
        world.owner.delete("/api/v1/me/totp", headers={"X-Confirm": _next_code(totp)}).status_code
        == 204
    )
    assert world.owner.get("/api/v1/me").json()["totp_enabled"] is False
    _enroll_totp(world.owner)
    assert (
        world.owner.delete("/api/v1/me/totp", headers={"X-Confirm": OWNER_PASSWORD}).status_code
        == 204
    )


def test_every_op_the_document_marks_sensitive_refuses_an_admin_without_a_valid_x_confirm(world):
    sensitive = [
        (m, p, op) for m, p, op in operations(world) if "X-Confirm" in op.get("description", "")
    ]
    assert ("DELETE", "/api/v1/users/{user_id}") in {(m, p) for m, p, _ in sensitive}
    for method, path, _op in sensitive:
        ids = {"user": _victim(world)}
        for header in ({}, {"X-Confirm": "wrong-password"}):
            resp = world.admin.request(
                method, fill(path, ids), json={} if method != "DELETE" else None, headers=header
            )
            assert (
                resp.status_code == 403 and resp.json()["error"]["code"] == "confirmation_required"
            ), (method, path, resp.text)
