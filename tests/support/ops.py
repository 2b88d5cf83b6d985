"""Helpers of the operations tests: bounded polls, the server's database file, channels, job runs.

Every wait is a poll with a deadline that fails with what it was waiting for; none sleeps blindly.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from support.server import ADMIN_PASSWORD, Client, ServerProcess

CONFIRM = {"X-Confirm": ADMIN_PASSWORD}
T = TypeVar("T")


def until(
    predicate: Callable[[], T], timeout: float = 60.0, what: str = "condition", step: float = 0.05
) -> T:
    """The first truthy value of predicate(), polled every `step` seconds for at most `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def rows(path: Path, sql: str, *params: Any) -> list[tuple]:
    """Run one statement on a database file beside the server (WAL: the server keeps writing)."""
    with sqlite3.connect(path, timeout=10) as conn:
        result = conn.execute(sql, params).fetchall()
    conn.close()
    return result


def db_file(server: ServerProcess) -> Path:
    return server.data_dir / "messagepusher.db"


def webhook(api: Client, url: str, name: str = "hook", default: bool = False) -> dict[str, Any]:
    """Create a webhook channel to `url` (asserting the 201) and return it."""
    channel = {"name": name, "type": "webhook", "config": {"url": url}}
    made = api.post("/api/v1/channels", json={**channel, "default": True} if default else channel)
    assert made.status_code == 201, made.text
    return made.json()


def run_job(api: Client, job: str, timeout: float = 60.0) -> dict[str, Any]:
    """Run a job now and return its finished run as GET /api/v1/admin/jobs shows it."""
    started = api.post(f"/api/v1/admin/jobs/{job}/run")
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    def finished() -> dict[str, Any] | None:
        jobs = {j["name"]: j for j in api.get("/api/v1/admin/jobs").json()["items"]}
        run = next((r for r in jobs[job]["last_runs"] if r["id"] == run_id), None)
        return run if run and run["outcome"] != "running" else None

    return until(finished, timeout, f"{job} run {run_id} finished")
