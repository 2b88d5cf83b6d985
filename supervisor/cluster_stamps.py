"""Cluster stamps: counters in the database that tell every process that shared state it caches changed.

One row per name; `bump` is one statement, `read` one indexed read. A process keeps the value it
read when it filled a cache and drops the cache when the value differs (up or down: a restored
backup may hold an older one).
"""

from __future__ import annotations

from messagepusher.supervisor.db import database

# API keys and the accounts behind them: bumped after any change that can refuse a cached key.
CREDENTIALS = "credentials"

BUMP_SQL = (
    "INSERT INTO cluster_stamp (name, value) VALUES (?, 1) "
    "ON CONFLICT (name) DO UPDATE SET value = cluster_stamp.value + 1"
)
READ_SQL = "SELECT value FROM cluster_stamp WHERE name = ?"


def bump(name: str) -> None:
    """Move stamp `name` on (caller's thread and connection; joins its transaction if one is open).

    Raises peewee errors when the database fails.
    """
    db = database.obj
    db.execute_sql(db.dialect.sql(BUMP_SQL), (name,))


def read(name: str) -> int:
    """The current value of stamp `name` (0 before its first bump). Raises peewee errors."""
    db = database.obj
    row = db.execute_sql(db.dialect.sql(READ_SQL), (name,)).fetchone()
    return int(row[0]) if row else 0


def credentials() -> int:
    """The `credentials` stamp: what the HTTP key cache compares on every lookup."""
    return read(CREDENTIALS)
