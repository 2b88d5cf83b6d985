"""Cluster stamps: counters that tell every process that shared state it caches changed.

One row per name in the database; `bump` is one statement, `read` one indexed read. A process
keeps the value it read when it filled a cache and drops the cache when the value differs (up
or down: a restored backup may hold an older one).

On SQLite, whose processes all run on the host that holds the file, each stamp is also kept
beside the database as a file that grows by one byte per bump, and `read` takes its length
(one stat, where the indexed read cost a twelfth of an HTTP thread's time in the burst
benchmark). Appends are atomic between processes, and a deleted file reads as 0: a change
either way, so caches are dropped, never kept.
"""

from __future__ import annotations

import os

from messagepusher.supervisor.db import database

# API keys and the accounts behind them: bumped after any change that can refuse a cached key.
CREDENTIALS = "credentials"

BUMP_SQL = (
    "INSERT INTO cluster_stamp (name, value) VALUES (?, 1) "
    "ON CONFLICT (name) DO UPDATE SET value = cluster_stamp.value + 1"
)
READ_SQL = "SELECT value FROM cluster_stamp WHERE name = ?"


class StampInTransaction(RuntimeError):
    """`bump` inside a transaction: a reader could reload the old state before it commits."""


def bump(name: str) -> None:
    """Move stamp `name` on, after the change it announces has committed (caller's thread).

    Raises StampInTransaction inside an open transaction, peewee errors when the database
    fails and OSError when the file beside a SQLite database cannot be written.
    """
    db = database.obj
    if db.in_transaction():
        raise StampInTransaction(f"stamp {name!r}: bump after the change commits, not inside it")
    db.execute_sql(db.dialect.sql(BUMP_SQL), (name,))
    path = db.dialect.host_stamp_path(name)
    if path is not None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)


def read(name: str) -> int:
    """The current value of stamp `name` (0 before its first bump). Raises peewee errors."""
    db = database.obj
    path = db.dialect.host_stamp_path(name)
    if path is not None:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return 0
    row = db.execute_sql(db.dialect.sql(READ_SQL), (name,)).fetchone()
    return int(row[0]) if row else 0


def credentials() -> int:
    """The `credentials` stamp: what the HTTP key cache compares on every lookup."""
    return read(CREDENTIALS)
