"""Starts the real server (python main.py) as a subprocess on an ephemeral port, for tests.

Also runs the CLI against the same data dir and makes HTTP calls with a key.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "admin-pass-Test-1"
LISTENING = re.compile(r"listening on http://[\d.]+:(\d+)")
API_KEY = re.compile(r"mp_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}")
# Every password the tests of this suite use follows the pattern <word>-pass-<rest>.
TEST_PASSWORD = re.compile(r"\b[a-z]+(?:-[a-z]+)?-pass-[A-Za-z0-9-]+")


def secrets_in(text: str) -> list[str]:
    """API keys and test passwords found in a log text (none may ever be there)."""
    return API_KEY.findall(text) + TEST_PASSWORD.findall(text)


class ServerProcess:
    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, config: Path | None = None
    ):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "MP_DATA_DIR": str(self.data_dir),
            "MP_SERVER__PORT": "0",
            "MP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MP_MAILBOX__SCAN_INTERVAL_SECONDS": "0.2",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        if "NOTIFY_SOCKET" not in (env or {}):
            self.env.pop("NOTIFY_SOCKET", None)
        self.config = config
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0
        self.log_path = self.data_dir / "server-0.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, *args: str) -> list[str]:
        cmd = [sys.executable, str(REPO / "main.py")]
        if self.config:
            cmd += ["--config", str(self.config)]
        return cmd + list(args)

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.log_path = self.data_dir / f"server-{self.starts}.log"
        self.starts += 1
        log = open(self.log_path, "w")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            self.command("serve"), cwd=REPO, env=self.env, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"server did not listen within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is not None:
            self.check_logs_hold_no_secret()
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.check_logs_hold_no_secret()
        return code

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.check_logs_hold_no_secret()

    def check_logs_hold_no_secret(self) -> None:
        """Every server's logs are scanned when it ends, so no test depends on running last."""
        for path in sorted(self.data_dir.glob("*.log")):
            found = secrets_in(path.read_text(errors="replace"))
            assert not found, f"{path} holds secrets: {found[:3]}"

    def cli(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*args),
            cwd=REPO,
            env={**self.env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def create_key(self, user: str = "admin", scopes: str | None = None) -> str:
        args = ["key", "create", "--user", user]
        if scopes is not None:
            args += ["--scopes", scopes]
        done = self.cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def create_user(
        self, name: str, password: str = "user-pass-Test-1", role: str = "user"
    ) -> None:
        done = self.cli(
            "user", "create", name, "--role", role, "--password-stdin", stdin=password + "\n"
        )
        assert done.returncode == 0, done.stderr

    def client(self, key: str) -> Client:
        return Client(self, key)


class Client:
    """requests with the server's base URL and a Bearer key."""

    def __init__(self, server: ServerProcess, key: str | None):
        self.server = server
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.request(method, self.server.url + path, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def wait_message(
        self, message_id: int, statuses: tuple[str, ...], timeout: float = 60.0
    ) -> dict[str, Any]:
        """Poll a message until its status is one of `statuses` (bounded)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.get(f"/api/v1/messages/{message_id}").json()
            if last.get("status") in statuses:
                return last
            time.sleep(0.05)
        raise AssertionError(
            f"message {message_id} did not reach {statuses} within {timeout}s: {last}"
        )
