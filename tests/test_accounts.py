"""User accounts: the admin API, one's own profile and preferences, passwords, disabling and deleting.

Deleting removes a user's data or hands it to another user, renaming channels that clash. A TOTP
code works once: at enrolment and in X-Confirm alike, a used code (or an earlier one) is refused.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import count

import pyotp
import pytest
import requests
from fakes.sink import Sink
from support.server import ADMIN_PASSWORD, ServerProcess

PASSWORD = "account-pass-1"
CONFIRM = {"X-Confirm": ADMIN_PASSWORD}
serial = count(1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    sink = Sink()
    server = ServerProcess(
        tmp_path_factory.mktemp("accounts"),
        {
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_SECURITY__LOGIN__SLOWDOWN_SECONDS": "0",
        },
    ).start()
    yield server, server.client(server.create_key()), sink
    server.stop()
    sink.close()


def new_user(env, **fields) -> tuple[dict, object]:
    """A fresh user and a client with a full key of theirs."""
    server, admin, _sink = env
    made = admin.post(
        "/api/v1/users", json={"username": f"u{next(serial)}", "password": PASSWORD, **fields}
    )
    assert made.status_code == 201, made.text
    user = made.json()
    key = admin.post(f"/api/v1/keys?user={user['id']}", json={"name": "test"}).json()["key"]
    return user, server.client(key)


def channel(env, client, name: str, **extra) -> dict:
    _server, _admin, sink = env
    body = {"name": name, "type": "webhook", "config": {"url": sink.url + "/in"}, **extra}
    made = client.post("/api/v1/channels", json=body)
    assert made.status_code == 201, made.text
    return made.json()


def login(server: ServerProcess, username: str, password: str) -> requests.Response:
    return requests.post(
        server.url + "/api/v1/session",
        json={"username": username, "password": password},
        timeout=30,
    )


def test_an_admin_creates_lists_shows_and_edits_a_user(env):
    _server, admin, _sink = env
    user, _client = new_user(
        env,
        display_name="Zhang San",
        email="zs@example.com",
        preferences={"timezone": "Asia/Shanghai", "language": "zh-CN"},
    )
    assert user["role"] == "user" and user["disabled"] is False and user["totp_enabled"] is False
    assert user["preferences"] == {
        "timezone": "Asia/Shanghai",
        "language": "zh-CN",
        "default_channels": [],
    }
    assert "password" not in str(user) and "hash" not in str(user)
    listed = admin.get("/api/v1/users?limit=200").json()["items"]
    assert user["id"] in {u["id"] for u in listed}
    shown = admin.get(f"/api/v1/users/{user['id']}").json()
    assert shown["display_name"] == "Zhang San"
    edited = admin.patch(
        f"/api/v1/users/{user['id']}", json={"display_name": "张三", "email": "z3@example.com"}
    )
    assert edited.status_code == 200 and edited.json()["display_name"] == "张三"
    assert admin.get("/api/v1/users/999999").status_code == 404


def test_creating_a_user_refuses_bad_fields_and_names_each(env):
    _server, admin, _sink = env
    user, _client = new_user(env)
    cases = [
        ({"username": user["username"], "password": PASSWORD}, 409, "username"),
        ({"username": "fresh1", "password": "short"}, 422, "password"),
        ({"username": "has space", "password": PASSWORD}, 422, "username"),
        ({"username": "fresh2", "password": PASSWORD, "role": "root"}, 422, "role"),
        ({"username": "fresh3", "password": PASSWORD, "email": "not-an-address"}, 422, "email"),
        (
            {
                "username": "fresh4",
                "password": PASSWORD,
                "preferences": {"timezone": "Mars/Olympus"},
            },
            422,
            "preferences.timezone",
        ),
        (
            {"username": "fresh5", "password": PASSWORD, "preferences": {"language": "fr"}},
            422,
            "preferences.language",
        ),
    ]
    for body, status, field in cases:
        resp = admin.post("/api/v1/users", json=body)
        assert resp.status_code == status, (body, resp.text)
        assert field in resp.json()["error"]["message"], (body, resp.text)
        assert "short" not in resp.text or field != "password", "the password must not be echoed"


def test_disabling_a_user_stops_their_keys_and_sessions_at_once_and_enabling_restores_the_keys(env):
    server, admin, _sink = env
    user, client = new_user(env)
    assert client.get("/api/v1/me").status_code == 200  # now cached
    web = requests.Session()
    assert web.post(
        server.url + "/api/v1/session", json={"username": user["username"], "password": PASSWORD}
    ).ok
    assert (
        admin.patch(f"/api/v1/users/{user['id']}", json={"disabled": True}).json()["disabled"]
        is True
    )
    assert client.get("/api/v1/me").status_code == 401
    assert web.get(server.url + "/api/v1/me").status_code == 401
    assert login(server, user["username"], PASSWORD).status_code == 401
    assert admin.patch(f"/api/v1/users/{user['id']}", json={"disabled": False}).status_code == 200
    assert client.get("/api/v1/me").status_code == 200


def test_an_admin_resets_a_password_which_ends_the_users_sessions(env):
    server, admin, _sink = env
    user, _client = new_user(env)
    web = requests.Session()
    assert web.post(
        server.url + "/api/v1/session", json={"username": user["username"], "password": PASSWORD}
    ).ok
    short = admin.patch(f"/api/v1/users/{user['id']}", json={"password": "short"}, headers=CONFIRM)
    assert short.status_code == 422 and "password" in short.json()["error"]["message"]
    reset = admin.patch(
        f"/api/v1/users/{user['id']}", json={"password": "brand-new-pass-1"}, headers=CONFIRM
    )
    assert reset.status_code == 200, reset.text
    assert web.get(server.url + "/api/v1/me").status_code == 401
    assert login(server, user["username"], PASSWORD).status_code == 401
    assert login(server, user["username"], "brand-new-pass-1").status_code == 200


def test_the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted(env):
    _server, admin, _sink = env
    me = admin.get("/api/v1/me").json()
    demote = admin.patch(f"/api/v1/users/{me['id']}", json={"role": "user"}, headers=CONFIRM)
    assert demote.status_code == 409 and demote.json()["error"]["code"] == "last_admin"
    disable = admin.patch(f"/api/v1/users/{me['id']}", json={"disabled": True})
    assert disable.status_code == 409 and disable.json()["error"]["code"] == "last_admin"
    delete = admin.delete(f"/api/v1/users/{me['id']}", headers=CONFIRM)
    assert delete.status_code == 409 and delete.json()["error"]["code"] == "cannot_delete_self"
    assert admin.get("/api/v1/me").json()["role"] == "admin"


def test_deleting_a_user_removes_their_messages_channels_and_keys(env):
    _server, admin, _sink = env
    user, client = new_user(env)
    hook = channel(env, client, "hook")
    message = client.post("/api/v1/messages", json={"title": "bye", "channels": ["hook"]}).json()
    deleted = admin.delete(f"/api/v1/users/{user['id']}", headers=CONFIRM)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"] == "delete" and deleted.json()["reassigned_to"] is None
    assert client.get("/api/v1/me").status_code == 401
    assert admin.get(f"/api/v1/messages/{message['id']}").status_code == 404
    assert admin.get(f"/api/v1/channels/{hook['id']}").status_code == 404
    assert admin.get(f"/api/v1/users/{user['id']}").status_code == 404


def test_deleting_with_reassign_moves_data_and_renames_channels_whose_names_clash(env):
    _server, admin, _sink = env
    leaving, leaving_client = new_user(env)
    staying, staying_client = new_user(env)
    channel(env, staying_client, "hook")
    moved_hook = channel(env, leaving_client, "hook", default=True)
    channel(env, leaving_client, "only-mine")
    group = leaving_client.post(
        "/api/v1/channels",
        json={"name": "team", "type": "group", "config": {"members": ["hook", "only-mine"]}},
    ).json()
    message = leaving_client.post(
        "/api/v1/messages", json={"title": "keep me", "channels": ["team"]}
    ).json()
    done = admin.delete(
        f"/api/v1/users/{leaving['id']}?data=reassign&to={staying['username']}", headers=CONFIRM
    )
    assert done.status_code == 200, done.text
    renamed = f"hook-{leaving['username']}"
    assert done.json()["renamed"] == {"hook": renamed} and done.json()["channels"] == 3
    assert done.json()["messages"] == 1 and done.json()["reassigned_to"] == staying["id"]
    names = {c["name"]: c for c in staying_client.get("/api/v1/channels").json()["items"]}
    assert set(names) == {"hook", renamed, "only-mine", "team"}
    assert names[renamed]["id"] == moved_hook["id"] and names[renamed]["default"] is False
    assert staying_client.get(f"/api/v1/channels/{group['id']}").json()["config"]["members"] == [
        renamed,
        "only-mine",
    ]
    assert staying_client.get(f"/api/v1/messages/{message['id']}").json()["title"] == "keep me"
    assert leaving_client.get("/api/v1/me").status_code == 401


def test_deleting_refuses_an_unknown_data_mode_or_a_missing_target(env):
    _server, admin, _sink = env
    user, _client = new_user(env)
    for query, field in (
        ("?data=archive", "data"),
        ("?data=reassign", "to"),
        ("?data=reassign&to=nobody", "to"),
        (f"?data=reassign&to={user['id']}", "to"),
    ):
        resp = admin.delete(f"/api/v1/users/{user['id']}{query}", headers=CONFIRM)
        assert resp.status_code == 422 and resp.json()["error"]["message"].startswith(field), (
            query,
            resp.text,
        )
    assert admin.get(f"/api/v1/users/{user['id']}").status_code == 200


def test_me_shows_and_changes_profile_and_preferences_and_default_channels_decide_where_messages_go(
    env,
):
    _server, _admin, _sink = env
    user, client = new_user(env)
    channel(env, client, "first", default=True)
    channel(env, client, "second")
    assert client.get("/api/v1/me").json()["preferences"]["default_channels"] == ["first"]
    changed = client.patch(
        "/api/v1/me",
        json={
            "display_name": "Me",
            "preferences": {
                "timezone": "Europe/Berlin",
                "language": "en",
                "default_channels": ["second"],
            },
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["preferences"] == {
        "timezone": "Europe/Berlin",
        "language": "en",
        "default_channels": ["second"],
    }
    defaults = {c["name"]: c["default"] for c in client.get("/api/v1/channels").json()["items"]}
    assert defaults == {"first": False, "second": True}
    sent = client.post("/api/v1/messages", json={"title": "where to?"}).json()
    shown = client.get(f"/api/v1/messages/{sent['id']}").json()
    assert [d["channel"]["name"] for d in shown["deliveries"]] == ["second"]
    for prefs, field in (
        ({"timezone": "Nowhere/Land"}, "preferences.timezone"),
        ({"language": "de"}, "preferences.language"),
        ({"default_channels": ["not-mine"]}, "preferences.default_channels"),
    ):
        resp = client.patch("/api/v1/me", json={"preferences": prefs})
        assert resp.status_code == 422 and field in resp.text, resp.text
    assert client.get("/api/v1/me").json()["preferences"]["timezone"] == "Europe/Berlin"


def test_changing_ones_own_password_needs_the_current_one(env):
    server, _admin, _sink = env
    user, client = new_user(env)
    missing = client.patch("/api/v1/me", json={"password": "next-pass-Test-1"})
    assert missing.status_code == 422 and "current_password" in missing.json()["error"]["message"]
    wrong = client.patch(
        "/api/v1/me", json={"password": "next-pass-Test-1", "current_password": "guess-guess"}
    )
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_password"
    right = client.patch(
        "/api/v1/me", json={"password": "next-pass-Test-1", "current_password": PASSWORD}
    )
    assert right.status_code == 200, right.text
    assert login(server, user["username"], PASSWORD).status_code == 401
    assert login(server, user["username"], "next-pass-Test-1").status_code == 200


# --- TOTP: every code works once ------------------------------------------------------------


def new_admin(env) -> object:
    """A fresh admin account and a client with a key of theirs carrying the admin scope."""
    server, admin, _sink = env
    made = admin.post(
        "/api/v1/users",
        json={"username": f"boss{next(serial)}", "password": PASSWORD, "role": "admin"},
        headers=CONFIRM,
    )
    assert made.status_code == 201, made.text
    key = admin.post(
        f"/api/v1/keys?user={made.json()['id']}", json={"name": "boss"}, headers=CONFIRM
    )
    assert key.status_code == 201, key.text
    return server.client(key.json()["key"])


def enroll(client) -> pyotp.TOTP:
    enrolled = client.post("/api/v1/me/totp")
    assert enrolled.status_code == 201, enrolled.text
    return pyotp.TOTP(enrolled.json()["secret"])


def admin_key_with(client, code: str) -> requests.Response:
    """A sensitive operation (a key carrying `admin`) confirmed by `code` in X-Confirm."""
    return client.post("/api/v1/keys", json={"name": "root"}, headers={"X-Confirm": code})


def assert_code_used(resp: requests.Response) -> None:
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert (
        error["code"] == "confirmation_required" and error["details"]["reason"] == "totp_code_used"
    ), resp.text
    assert "already used" in error["message"] and "wait for the next code" in error["message"], (
        resp.text
    )


def test_a_totp_code_works_once_at_enrolment_and_in_x_confirm_and_the_next_code_works(env):
    client = new_admin(env)
    totp = enroll(client)
    now = time.time()  # one instant for every code, so that they are consecutive steps s, s+1
    code, next_code = totp.at(now), totp.at(now, counter_offset=1)
    assert client.post("/api/v1/me/totp/confirm", json={"code": code}).json() == {"enabled": True}
    replayed = client.post("/api/v1/me/totp/confirm", json={"code": code})
    assert replayed.status_code == 422 and "already used" in replayed.json()["error"]["message"], (
        replayed.text
    )
    assert_code_used(admin_key_with(client, code))  # the enrolment code cannot confirm anything
    assert admin_key_with(client, next_code).status_code == 201, "the next step's code works"
    assert_code_used(
        admin_key_with(client, next_code)
    )  # nor can an observed X-Confirm code, replayed
    assert_code_used(admin_key_with(client, code))  # an earlier step than the last used one
    assert admin_key_with(client, ADMIN_PASSWORD).status_code == 403, (
        "the password is this admin's own"
    )
    assert admin_key_with(client, PASSWORD).status_code == 201, "the password still confirms"


def test_of_concurrent_requests_with_one_totp_code_exactly_one_passes(env):
    client = new_admin(env)
    totp = enroll(client)
    now = time.time()
    assert client.post("/api/v1/me/totp/confirm", json={"code": totp.at(now)}).status_code == 200
    code, start = totp.at(now, counter_offset=1), threading.Barrier(4)

    def attempt(
        _n: int,
    ) -> requests.Response:  # one connection each: a requests.Session is not thread-safe
        headers = {"Authorization": client.session.headers["Authorization"], "X-Confirm": code}
        start.wait(10)
        return requests.post(
            client.server.url + "/api/v1/keys", json={"name": "root"}, headers=headers, timeout=30
        )

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(attempt, range(4)))
    assert sorted(a.status_code for a in answers) == [201, 403, 403, 403], [a.text for a in answers]
    for refused in (a for a in answers if a.status_code == 403):
        assert_code_used(refused)


def test_malformed_totp_codes_are_refused_without_a_server_error(env):
    client = new_admin(env)
    totp = enroll(client)
    for code in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12 34 5", "9" * 1000):
        resp = client.post("/api/v1/me/totp/confirm", json={"code": code})
        assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_field", (
            code,
            resp.text,
        )
    assert client.post("/api/v1/me/totp/confirm", json={"code": totp.now()}).status_code == 200
    for header in ("²²²²²²", "12 345", "000000"):
        resp = admin_key_with(client, header)
        assert (
            resp.status_code == 403 and resp.json()["error"]["code"] == "confirmation_required"
        ), (header, resp.text)
