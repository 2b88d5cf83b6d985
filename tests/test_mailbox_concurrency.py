"""Four OS processes claim from one mailbox of 10,000 entries, on SQLite and on PostgreSQL.

Each worker logs the ids it acked; the union must be every id exactly once.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import peewee
import pytest

from messagepusher.supervisor.db import open_database
from messagepusher.supervisor.mailbox import Mailbox, NewEntry
from messagepusher.supervisor.migrations import migrate
from messagepusher.supervisor.models import MailboxEntry

WORKER = Path(__file__).parent / "support" / "mailbox_worker.py"
ENTRIES = 10_000
WORKERS = 4
BATCH = 16

pytestmark = pytest.mark.xdist_group("heavy")


def fill(url: str) -> tuple[peewee.Database, list[int]]:
    db = open_database(url)
    db.connect()
    migrate(db)
    Mailbox(db).put_many(
        NewEntry("channel_pool", "send", {"n": n}, priority=1 + n % 5) for n in range(ENTRIES)
    )
    ids = [i for (i,) in MailboxEntry.select(MailboxEntry.id).tuples()]
    assert len(ids) == ENTRIES
    return db, ids


def run_workers(url: str, tmp_path: Path) -> list[Path]:
    """Start every worker, release them together once all are ready, wait for all to finish.

    Each worker holds its first claim until every worker has one, so all four take part
    whatever the OS scheduler does (on a fast machine one process could otherwise drain the
    mailbox before the others wake from SQLite's busy handler).
    """
    logs = [tmp_path / f"acked-{n}.log" for n in range(WORKERS)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, "channel_pool", str(BATCH), str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for log in logs
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout.readline().strip() == "claimed", proc.stderr.read()
        for proc in procs:
            proc.stdin.write("continue\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert "database is locked" not in err
        assert proc.returncode == 0, err
    return logs


def assert_each_entry_processed_exactly_once(
    db: peewee.Database, ids: list[int], logs: list[Path]
) -> None:
    acked = [int(line) for log in logs for line in log.read_text().split()]
    twice = [i for i, n in Counter(acked).items() if n > 1]
    assert twice == [], f"{len(twice)} entries acked more than once, e.g. {twice[:5]}"
    assert sorted(acked) == sorted(ids)
    per_worker = [len(log.read_text().split()) for log in logs]
    assert all(per_worker), f"a worker acked nothing: {per_worker}"
    left = MailboxEntry.select().where(MailboxEntry.state != "done").count()
    assert left == 0
    claimed_twice = MailboxEntry.select().where(MailboxEntry.attempts != 1).count()
    assert claimed_twice == 0


def test_four_processes_on_one_sqlite_file_process_every_entry_exactly_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'mailbox.db'}"
    db, ids = fill(url)
    db.close()
    logs = run_workers(url, tmp_path)
    db.connect()
    assert_each_entry_processed_exactly_once(db, ids, logs)
    db.close()


def test_four_processes_on_one_postgresql_schema_process_every_entry_exactly_once(
    tmp_path, postgres_url
):
    url, _schema = postgres_url
    db, ids = fill(url)
    logs = run_workers(url, tmp_path)
    assert_each_entry_processed_exactly_once(db, ids, logs)
    db.close_all()
