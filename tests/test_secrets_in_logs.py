"""Secrets never leak: not into the server's logs (at DEBUG), the audit log, or API answers.

One scenario uses every kind of secret; then the logs of every server this test session has started so far are scanned.
"""

from __future__ import annotations

import re
import sqlite3

import pyotp
import pytest
import requests
from fakes.sink import Sink
from support.server import ADMIN_PASSWORD, ServerProcess

API_KEY = re.compile(r"mp_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}")
# Every password the tests of this suite use follows the pattern <word>-pass-<rest>.
TEST_PASSWORD = re.compile(r"\b[a-z]+(?:-[a-z]+)?-pass-[A-Za-z0-9-]+")
WRONG_GUESSES = ("wrong-password", "guess-guess")

PASSWORD = "leak-pass-Test-1"
NEW_PASSWORD = "leak-pass-Test-2"
CHANNEL_SECRET = "chan-secret-" + "x7" * 10


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
        admin.post("/api/v1/users", json={"username": "leaky", "password": PASSWORD})
        made = admin.post("/api/v1/keys?user=leaky", json={"name": "leaky"})
        once.append(made)
        key = made.json()["key"]
        secrets.update({key, key.split("_", 2)[2]})
        user = server.client(key)
        user.session.hooks["response"].append(keep)
        user.post(
            "/api/v1/channels",
            json={
                "name": "hook",
                "type": "webhook",
                "default": True,
                "config": {"url": sink.url, "headers": {"Authorization": CHANNEL_SECRET}},
            },
        )
        user.get("/api/v1/channels")
        user.post("/api/v1/messages", json={"title": "hello"})
        user.get("/push/leaky", params={"token": key, "title": "compat"})
        tampered = key[:-6] + "AAAAAA"
        secrets.add(tampered)
        server.client(tampered).get("/api/v1/me")
        enrolled = user.post("/api/v1/me/totp")
        once.append(enrolled)
        totp_secret = enrolled.json()["secret"]
        secrets.add(totp_secret)
        user.post("/api/v1/me/totp/confirm", json={"code": pyotp.TOTP(totp_secret).now()})
        user.delete("/api/v1/me/totp", headers={"X-Confirm": "wrong-password"})
        admin.post("/api/v1/keys", json={"name": "root"}, headers={"X-Confirm": ADMIN_PASSWORD})
        web = requests.Session()
        web.hooks["response"].append(keep)
        web.post(
            server.url + "/api/v1/session", json={"username": "leaky", "password": "guess-guess"}
        )
        login = web.post(
            server.url + "/api/v1/session", json={"username": "leaky", "password": PASSWORD}
        )
        once.append(login)
        secrets.update({login.cookies["mp_session"], login.json()["csrf_token"]})
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        web.patch(
            server.url + "/api/v1/me",
            json={"password": NEW_PASSWORD, "current_password": PASSWORD},
            headers=csrf,
        )
        once.append(web.get(server.url + "/api/v1/session"))
        web.delete(server.url + "/api/v1/session", headers=csrf)
        admin.patch(
            "/api/v1/users/2",
            json={"password": ADMIN_PASSWORD + "x"},
            headers={"X-Confirm": ADMIN_PASSWORD},
        )
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
    key_answer, totp_answer, login_answer, session_answer = once
    assert key_answer.json()["key"] in secrets and totp_answer.json()["secret"] in secrets
    assert login_answer.json()["csrf_token"] == session_answer.json()["csrf_token"]
    assert not leaks(
        login_answer.text + session_answer.text, secrets - {login_answer.json()["csrf_token"]}
    )


def test_no_server_log_of_this_test_session_holds_an_api_key_or_a_test_password(
    scenario, tmp_path_factory
):
    base = tmp_path_factory.getbasetemp()
    root = base.parent if base.name.startswith("popen-gw") else base
    logs = sorted(root.rglob("server*.log"))
    assert logs
    for path in logs:
        text = path.read_text(errors="replace")
        found = (
            API_KEY.findall(text)
            + TEST_PASSWORD.findall(text)
            + [g for g in WRONG_GUESSES if g in text]
        )
        assert not found, (path, found[:3])
