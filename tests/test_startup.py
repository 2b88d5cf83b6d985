"""Start-up: a restarted server is ready quickly, and the heavy libraries wait for their first use.

The real server as a subprocess; python's own import log (PYTHONPROFILEIMPORTTIME) says what it loaded.
"""

from __future__ import annotations

import re
import resource
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest
from fakes.pages import PageServer
from support.ops import until

from messagepusher.supervisor.db import make_database
from messagepusher.supervisor.migrations import migrate
from messagepusher.supervisor.models import database

pytestmark = pytest.mark.xdist_group("heavy")

READY_BOUND_SECONDS = 3.0
# Each costs start-up time and is needed only by some work: a page fetch (trafilatura, lxml,
# charset_normalizer, requests), an Apprise channel, markdown e-mail, a channel's secrets.
LAZY = {
    "apprise",
    "trafilatura",
    "lxml",
    "charset_normalizer",
    "markdown",
    "cryptography",
    "requests",
    "urllib3",
}
IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$", re.MULTILINE)


def ready_after(server, timeout: float = 20.0) -> tuple[float, float]:
    """Start `server` and poll /readyz: seconds from the start to the first 200, and the CPU
    seconds the server used to get there."""
    started = time.monotonic()
    server.start(timeout)
    client = server.client(None)
    until(lambda: client.get("/readyz", timeout=5).status_code == 200, timeout, "/readyz 200")
    seconds = time.monotonic() - started
    times = psutil.Process(server.proc.pid).cpu_times()
    return seconds, times.user + times.system


def slowdown() -> float:
    """How much longer than its CPU time a CPU-bound Python start takes now (1.0: an idle core).

    The same imports as the server's largest, run just before the server starts.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import pydantic, falcon, peewee, apscheduler.schedulers.background",
        ],
        check=True,
        timeout=60,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return max(1.0, wall / max(cpu, 0.01))


def top_level_imports(log: str) -> set[str]:
    return {name.partition(".")[0] for name in IMPORTED.findall(log)}


def test_a_restarted_server_is_ready_within_three_seconds(server_factory):
    """On a machine other work keeps busy the server waits for a core; that wait, estimated
    from a reference start just before, is taken off. Sleeps and waits of its own are not."""
    server = server_factory()  # the first start creates the schema and the admin
    assert server.stop() == 0
    runs = []
    for _ in range(3):
        factor = slowdown()
        seconds, cpu = ready_after(server)
        runs.append((seconds - cpu * (factor - 1), seconds, cpu, factor))
        assert server.stop() == 0
    # The fastest of three restarts: a busy moment slows one, a slow start slows all.
    assert min(runs)[0] <= READY_BOUND_SECONDS, (
        "start to /readyz: (idle estimate, seconds, CPU seconds, machine slowdown) "
        + repr([tuple(round(v, 2) for v in run) for run in runs])
    )


def test_a_fresh_server_imports_the_heavy_libraries_only_for_the_first_message_that_needs_them(
    server_factory, sink
):
    server = server_factory(
        {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "PYTHONPROFILEIMPORTTIME": "1"},
        start=False,
    )
    ready_after(server)
    at_ready = top_level_imports(server.log())
    assert "pydantic" in at_ready  # the import log is there to be read
    eager = sorted(at_ready & LAZY)
    assert not eager, f"imported before the server was ready: {eager}"

    pages = PageServer()
    try:
        api = server.client(server.create_key())
        apprise_url = sink.url.replace("http://", "json://") + "/apprise"
        created = api.post(
            "/api/v1/channels",
            json={"name": "via-apprise", "type": "apprise", "config": {"urls": [apprise_url]}},
        )
        assert created.status_code == 201, created.text
        sent = api.post(
            "/api/v1/messages",
            json={
                "title": "Report",
                "url": pages.url + "/article",
                "ai": {"task": "summarize"},
                "channels": ["via-apprise"],
            },
        )
        assert sent.status_code == 202, sent.text
        message = api.wait_message(sent.json()["id"], ("delivered", "failed", "partially_failed"))
    finally:
        pages.close()
    assert message["status"] == "delivered", message
    assert message["fetched"]["title"] == "Quarterly Storage Report"
    assert "storage" in message["ai"]["result"].lower()
    (arrival,) = sink.received()
    assert arrival["path"] == "/apprise" and arrival["body"]["title"] == "Report"
    assert message["ai"]["result"] in arrival["body"]["message"]
    after_use = top_level_imports(server.log())
    assert {"apprise", "trafilatura", "lxml", "cryptography", "requests", "urllib3"} <= after_use
    assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_an_up_to_date_database_is_checked_without_waiting_for_the_write_lock(tmp_path):
    url = f"sqlite:///{tmp_path / 'current.db'}"
    db = make_database(url, busy_timeout_ms=2_000)
    database.initialize(db)
    db.connect()
    migrate(db)
    other = sqlite3.connect(tmp_path / "current.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process of this node is writing
    try:
        started = time.monotonic()
        assert migrate(db) == []
        assert time.monotonic() - started < 1.0  # the busy timeout is 2 s
    finally:
        other.execute("ROLLBACK")
        other.close()
        db.close()
