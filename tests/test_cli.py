"""The command line: serve's start and clean stop, first-start admin, users and keys."""

from __future__ import annotations

import re
import sqlite3
import time

import requests
from support.server import ServerProcess


def test_serve_answers_healthz_within_30_seconds_and_exits_0_on_sigterm(tmp_path):
    # About 2 s on the idle 2-core machine; it took over 10 s there with eight suites running.
    started = time.monotonic()
    server = ServerProcess(tmp_path / "d").start(timeout=30)
    assert requests.get(server.url + "/healthz", timeout=30).json() == {"status": "ok"}
    assert time.monotonic() - started < 30
    assert server.stop() == 0
    assert "stopped (exit 0)" in server.log()


def test_first_start_without_a_password_generates_one_that_logs_in_and_prints_it_once(tmp_path):
    server = ServerProcess(tmp_path / "d", env={"MP_ADMIN_PASSWORD": ""})
    done = server.cli("check-config")
    assert done.returncode == 0
    done = server.cli("key", "create", "--user", "admin")
    printed = re.search(r"created user admin with password (\S+) \(shown once\)", done.stderr)
    assert printed, done.stderr
    again = server.cli("key", "create", "--user", "admin")
    assert "created user admin" not in again.stderr
    server.start()
    login = {"username": "admin", "password": printed.group(1)}
    answer = requests.post(server.url + "/api/v1/session", json=login, timeout=30)
    assert answer.status_code == 200, answer.text
    assert "mp_session" in answer.cookies
    wrong = requests.post(
        server.url + "/api/v1/session", json={**login, "password": "not-it-1234"}, timeout=30
    )
    assert wrong.status_code == 401, wrong.text
    assert server.stop() == 0


def test_user_and_key_creation_store_only_a_hash_of_the_key(tmp_path):
    server = ServerProcess(tmp_path / "d")
    server.create_user("alice", "alice-password-1")
    key = server.create_key("alice", scopes="messages:send")
    assert key.startswith("mp_")
    db = sqlite3.connect(tmp_path / "d" / "messagepusher.db")
    (scopes,) = db.execute("SELECT scopes FROM api_key").fetchone()
    assert scopes == '["messages:send"]'
    assert key.split("_", 2)[2].encode() not in (tmp_path / "d" / "messagepusher.db").read_bytes()


def test_a_key_without_scopes_carries_every_scope_of_its_role(tmp_path):
    server = ServerProcess(tmp_path / "d")
    server.create_user("bob", "bob-password-1")
    server.create_key("bob")
    db = sqlite3.connect(tmp_path / "d" / "messagepusher.db")
    (scopes,) = db.execute("SELECT scopes FROM api_key").fetchone()
    assert "admin" not in scopes and "messages:send" in scopes and "keys:manage" in scopes


def test_cli_mistakes_are_one_line_errors_not_tracebacks(tmp_path):
    server = ServerProcess(tmp_path / "d")
    cases = [
        (("key", "create", "--user", "ghost"), "no user 'ghost'"),
        (
            ("key", "create", "--user", "admin", "--scopes", "messages:fly"),
            "unknown scope 'messages:fly'",
        ),
        (("user", "create", "bad name!", "--password-stdin"), "username 'bad name!'"),
        (("user", "create", "carol", "--password-stdin"), "at least 8 characters"),
    ]
    for args, expected in cases:
        done = server.cli(*args, stdin="short\n")
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr
    server.create_user("dave", "dave-password-1")
    done = server.cli("user", "create", "dave", "--password-stdin", stdin="dave-password-1\n")
    assert done.returncode == 1 and "already exists" in done.stderr
    done = server.cli("user", "frobnicate")
    assert done.returncode == 2 and "Traceback" not in done.stderr
