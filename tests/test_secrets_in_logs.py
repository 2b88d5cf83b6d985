"""Secrets never leak: not into the server's logs (at DEBUG), the audit log, or API answers.

One scenario uses every kind of secret, each step checked to have worked (a failed step would make
the scan vacuous). Every other server of the suite scans its own logs when it stops.
"""

from __future__ import annotations

import sqlite3

import pyotp
import pytest
import requests
from fakes.sink import Sink
from support.server import ADMIN_PASSWORD, ServerProcess, secrets_in

WRONG_GUESSES = ("wrong-password", "guess-guess")

PASSWORD = "leak-pass-Test-1"
NEW_PASSWORD = "leak-pass-Test-2"
CHANNEL_SECRET = "chan-secret-" + "x7" * 10


def ok(resp: requests.Response, status: int) -> requests.Response:
    """The answer, once it is the status the step needs: a failed step would hide a leak."""
    assert resp.status_code == status, (resp.request.method, resp.url, resp.status_code, resp.text)
    return resp


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Runs the scenario on a DEBUG-logging server; returns (server, secrets, answers, one-time answers)."""
    sink = Sink()
    server = ServerProcess(
        tmp_path_factory.mktemp("secrets"),
        {
            "MP_LOGGING__LEVEL": "DEBUG",
            "MP_LOGGING__FILE": "server.log",
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_SECURITY__LOGIN__SLOWDOWN_SECONDS": "0",
        },
    ).start()
    answers: list[requests.Response] = []
    once: list[requests.Response] = []  # answers whose job is to show a secret one time
    secrets = {ADMIN_PASSWORD, PASSWORD, NEW_PASSWORD, CHANNEL_SECRET, *WRONG_GUESSES}

    def keep(resp, *args, **kwargs):
        answers.append(resp)

    try:
        admin_key = server.create_key()
        secrets.add(admin_key)
        admin = server.client(admin_key)
        admin.session.hooks["response"].append(keep)
        ok(admin.post("/api/v1/users", json={"username": "leaky", "password": PASSWORD}), 201)
        made = ok(admin.post("/api/v1/keys?user=leaky", json={"name": "leaky"}), 201)
        once.append(made)
        key = made.json()["key"]
        secrets.update({key, key.split("_", 2)[2]})
        user = server.client(key)
        user.session.hooks["response"].append(keep)
        ok(
            user.post(
                "/api/v1/channels",
                json={
                    "name": "hook",
                    "type": "webhook",
                    "default": True,
                    "config": {"url": sink.url, "headers": {"Authorization": CHANNEL_SECRET}},
                },
            ),
            201,
        )
        ok(user.get("/api/v1/channels"), 200)
        ok(user.post("/api/v1/messages", json={"title": "hello"}), 202)
        ok(user.get("/push/leaky", params={"token": key, "title": "compat"}), 200)
        tampered = key[:-6] + "AAAAAA"
        secrets.add(tampered)
        ok(server.client(tampered).get("/api/v1/me"), 401)
        enrolled = ok(user.post("/api/v1/me/totp"), 201)
        once.append(enrolled)
        totp_secret = enrolled.json()["secret"]
        secrets.add(totp_secret)
        code = pyotp.TOTP(totp_secret).now()
        ok(user.post("/api/v1/me/totp/confirm", json={"code": code}), 200)
        ok(user.delete("/api/v1/me/totp", headers={"X-Confirm": "wrong-password"}), 403)
        root = admin.post(
            "/api/v1/keys", json={"name": "root"}, headers={"X-Confirm": ADMIN_PASSWORD}
        )
        once.append(ok(root, 201))
        secrets.add(root.json()["key"])
        web = requests.Session()
        web.hooks["response"].append(keep)
        guess = {"username": "leaky", "password": "guess-guess"}
        ok(web.post(server.url + "/api/v1/session", json=guess), 401)
        login = ok(
            web.post(server.url + "/api/v1/session", json={**guess, "password": PASSWORD}), 200
        )
        once.append(login)
        secrets.update({login.cookies["mp_session"], login.json()["csrf_token"]})
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        changed = web.patch(
            server.url + "/api/v1/me",
            json={"password": NEW_PASSWORD, "current_password": PASSWORD},
            headers=csrf,
        )
        ok(changed, 200)
        once.append(ok(web.get(server.url + "/api/v1/session"), 200))
        ok(web.delete(server.url + "/api/v1/session", headers=csrf), 204)
        reset = admin.patch(
            "/api/v1/users/2",
            json={"password": ADMIN_PASSWORD + "x"},
            headers={"X-Confirm": ADMIN_PASSWORD},
        )
        ok(reset, 200)
        secrets.add(ADMIN_PASSWORD + "x")
    finally:
        server.stop()
        sink.close()
    return server, secrets, answers, once


def leaks(text: str, secrets: set[str]) -> list[str]:
    return sorted(s for s in secrets if s in text)


def test_the_server_logs_at_debug_hold_no_password_key_token_or_totp_secret(scenario):
    server, secrets, _answers, _once = scenario
    for path in [*server.data_dir.glob("server-*.log"), server.data_dir / "server.log"]:
        text = path.read_text(errors="replace")
        assert text, f"{path} is empty: the scan would prove nothing"
        assert not leaks(text, secrets), (path, leaks(text, secrets))


def test_audit_rows_hold_no_secret(scenario):
    server, secrets, _answers, _once = scenario
    with sqlite3.connect(server.data_dir / "messagepusher.db") as db:
        rows = db.execute("SELECT * FROM audit_log").fetchall()
    assert len(rows) > 10
    assert not leaks(str(rows), secrets)


def test_api_answers_show_a_secret_only_where_that_is_their_purpose(scenario):
    _server, secrets, answers, once = scenario
    assert len(answers) > 10
    for resp in answers:
        if any(resp is shown for shown in once):
            continue
        text = resp.text + str({k: v for k, v in resp.headers.items() if k.lower() != "set-cookie"})
        assert not leaks(text, secrets), (resp.request.method, resp.url, leaks(text, secrets))
    key_answer, totp_answer, root_answer, login_answer, session_answer = once
    assert key_answer.json()["key"] in secrets and totp_answer.json()["secret"] in secrets
    assert root_answer.json()["key"] in secrets
    assert login_answer.json()["csrf_token"] == session_answer.json()["csrf_token"]
    assert not leaks(
        login_answer.text + session_answer.text, secrets - {login_answer.json()["csrf_token"]}
    )


def test_every_server_checks_its_own_logs_for_keys_and_test_passwords_when_it_stops(tmp_path):
    """The whole suite's servers are covered this way, in any order, not only those run before."""
    key = "mp_0123456789ab_" + "K" * 24
    assert secrets_in(f"GET /api/v1/me key={key}") == [key]
    assert secrets_in("login failed for carol-pass-Test-1") == ["carol-pass-Test-1"]
    assert secrets_in("login failed for user carol from 127.0.0.1") == []
    server = ServerProcess(tmp_path / "d")
    (server.data_dir / "server.log").write_text(f"leaked {key}\n")
    with pytest.raises(AssertionError, match="holds secrets"):
        server.check_logs_hold_no_secret()
