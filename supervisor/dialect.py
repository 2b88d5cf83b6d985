"""The SQL dialect: every place where SQLite and PostgreSQL differ, behind one narrow interface.

Callers write `?` placeholders and portable SQL and ask `db.dialect` (each database gets its own from `supervisor/db.py`, which opens it) for the rest; nothing else tests which engine it has.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import peewee
import psycopg2.extras

# A quoted literal or identifier (kept as it is) or a `?` placeholder.
_QUOTED_OR_PARAM = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|\?""")


@functools.lru_cache(maxsize=1024)
def _pyformat(sql: str) -> str:
    """`?` placeholders outside quotes as `%s`, and every literal `%` doubled.

    psycopg2 reads `%` anywhere in a statement run with parameters (peewee always passes
    some), so a `LIKE 'a%'` needs `%%`; a `?` inside a string literal is data, not a
    placeholder. Statements are constants, so each is translated once.
    """
    sql = sql.replace("%", "%%")
    return _QUOTED_OR_PARAM.sub(lambda m: "%s" if m.group() == "?" else m.group(), sql)


def without_file(path: str) -> bool:
    """True for a SQLite database that is not a plain file path (in memory, or a URI)."""
    return path in ("", ":memory:") or path.startswith("file:")


class SqliteDialect:
    """SQLite (WAL): one writer at a time, so row and advisory locks have nothing to add."""

    name = "sqlite"
    param = "?"

    def __init__(self, db: peewee.Database):
        self.db = db
        self._stamp_paths: dict[str, str | None] = {}  # one realpath per name, not per read

    def sql(self, text: str) -> str:
        """The statement as the driver takes it (SQLite reads `?` itself)."""
        return text

    def write_transaction(self):
        """A transaction that takes the write lock up front (BEGIN IMMEDIATE).

        Taking it at BEGIN instead of at the first write avoids the deadlock-and-retry
        path SQLite takes when two readers both try to upgrade.
        """
        return self.db.atomic("IMMEDIATE")

    def relaxed_commit(self):
        """A block whose writes may be lost in a crash in exchange for a cheaper commit.

        SQLite: nothing to relax; the block runs as it is.
        """
        return contextlib.nullcontext()

    def host_stamp_path(self, name: str) -> str | None:
        """Where stamp `name` is also kept on this host (supervisor/cluster_stamps.py).

        Every process of a SQLite database runs on the host that holds its file, so a file
        beside it reaches them all for the price of a stat; an in-memory database has none.
        """
        if name not in self._stamp_paths:
            path = str(self.db.database)
            self._stamp_paths[name] = (
                None if without_file(path) else f"{os.path.realpath(path)}-stamp-{name}"
            )
        return self._stamp_paths[name]

    def for_update(self, select: str) -> str:
        """The SELECT as one that locks its rows until the transaction ends.

        SQLite has no row locks: the write transaction already holds the only write lock.
        """
        return select

    def skip_locked(self, select: str) -> str:
        """The SELECT as one that locks its rows and passes over rows others hold (a claim)."""
        return select

    def lock_in_transaction(self, lock_class: int, ident: int) -> None:
        """Be the only transaction holding (lock_class, ident) until this one ends."""

    @contextlib.contextmanager
    def session_lock(self, key: int) -> Iterator[None]:
        """Be the only connection holding `key` for the block (e.g. migrating the schema).

        On SQLite each step's write transaction is the lock; there is nothing to add.
        """
        yield

    def serialize_inserts(self, table: str) -> None:
        """Make inserts into `table` commit in id order until the transaction ends.

        SQLite draws an id inside the one write transaction, so ids already commit in order.
        """

    def insert_ignore_many(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        """Insert rows, skipping each that conflicts with a unique key, on this thread's connection."""
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT DO NOTHING"
        )
        self.db.cursor().executemany(sql, rows)

    def widen_varchar(self, table: str, column: str, length: int) -> None:
        """Let a text column hold `length` characters (SQLite ignores declared lengths)."""

    def json_integer(self, column: str, key: str) -> str:
        """SQL for the integer at `key` of a JSON text column (NULL when absent)."""
        return f"CAST(json_extract({column}, '$.{key}') AS INTEGER)"

    def table_exists(self, table: str) -> bool:
        return self.db.table_exists(table)

    def columns(self, table: str) -> set[str]:
        return {c.name for c in self.db.get_columns(table)}

    def maintain(self, vacuum_when: Callable[[int, int], bool]) -> dict[str, Any]:
        """Checkpoint the WAL, optimize, check integrity, VACUUM when vacuum_when(free, pages).

        Runs in the caller's thread; database errors propagate. The integrity check's
        findings are returned ("ok" or the first twenty problems), not raised.
        """
        busy, wal_pages, checkpointed = self.db.execute_sql(
            "PRAGMA wal_checkpoint(TRUNCATE)"
        ).fetchone()
        self.db.execute_sql("PRAGMA optimize")
        problems = [row[0] for row in self.db.execute_sql("PRAGMA integrity_check").fetchall()]
        free = self.db.execute_sql("PRAGMA freelist_count").fetchone()[0]
        pages = self.db.execute_sql("PRAGMA page_count").fetchone()[0]
        vacuumed = vacuum_when(free, pages)
        if vacuumed:
            self.db.execute_sql("VACUUM")
        return {
            "checkpoint": {
                "complete": not busy,
                "wal_pages": wal_pages,
                "checkpointed_pages": checkpointed,
            },
            "integrity": "ok" if problems == ["ok"] else "; ".join(problems[:20]),
            "free_pages": free,
            "pages": pages,
            "vacuumed": vacuumed,
        }


class PostgresDialect:
    """PostgreSQL: many writers at once, so shared state needs row, table and advisory locks."""

    name = "postgres"
    param = "%s"

    def __init__(self, db: peewee.Database):
        self.db = db

    def host_stamp_path(self, name: str) -> str | None:
        """None: the processes sharing a PostgreSQL database may run on other hosts, so
        stamps are read from the database itself."""
        return None

    def sql(self, text: str) -> str:
        """The statement with psycopg2's placeholders (`%s`) and its `%` doubled."""
        return _pyformat(text)

    def write_transaction(self):
        """A plain transaction: PostgreSQL locks rows as they are written."""
        return self.db.atomic()

    @contextlib.contextmanager
    def relaxed_commit(self) -> Iterator[None]:
        """A block whose writes may be lost in a crash in exchange for a cheaper commit.

        Outside a transaction: its own transaction committed without waiting for the WAL flush
        (`synchronous_commit` off). Inside one: the caller's transaction decides.
        """
        if self.db.in_transaction():
            yield
            return
        with self.db.atomic():
            self.db.execute_sql("SET LOCAL synchronous_commit TO OFF")
            yield

    def for_update(self, select: str) -> str:
        """The SELECT as one that locks its rows until the transaction ends."""
        return f"{select} FOR UPDATE"

    def skip_locked(self, select: str) -> str:
        """The SELECT as one that locks its rows and passes over rows others hold (a claim)."""
        return f"{select} FOR UPDATE SKIP LOCKED"

    def lock_in_transaction(self, lock_class: int, ident: int) -> None:
        """Be the only transaction holding (lock_class, ident) until this one ends (two int4s)."""
        self.db.execute_sql("SELECT pg_advisory_xact_lock(%s, %s)", (lock_class, ident))

    @contextlib.contextmanager
    def session_lock(self, key: int) -> Iterator[None]:
        """Be the only connection holding `key` for the block (e.g. migrating the schema)."""
        self.db.execute_sql("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            self.db.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))

    def serialize_inserts(self, table: str) -> None:
        """Make inserts into `table` commit in id order until the transaction ends.

        Sequence values are drawn before commit: without the lock a reader could see id 11
        committed before id 10 and resume past 10 for good.
        """
        self.db.execute_sql(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")

    def insert_ignore_many(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        """Insert rows in multi-row VALUES, skipping each that conflicts with a unique key."""
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES %s ON CONFLICT DO NOTHING"
        psycopg2.extras.execute_values(self.db.cursor(), sql, rows, page_size=500)

    def widen_varchar(self, table: str, column: str, length: int) -> None:
        """Let a text column hold `length` characters (ALTER COLUMN … TYPE VARCHAR)."""
        self.db.execute_sql(
            f"ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR({int(length)})"
        )

    def json_integer(self, column: str, key: str) -> str:
        """SQL for the integer at `key` of a JSON text column (NULL when absent)."""
        return f"CAST(CAST({column} AS jsonb) ->> '{key}' AS BIGINT)"

    def table_exists(self, table: str) -> bool:
        # to_regclass follows search_path; peewee's table_exists looks only in "public".
        return self.db.execute_sql("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None

    def columns(self, table: str) -> set[str]:
        # information_schema follows search_path; peewee's get_columns looks only in "public".
        rows = self.db.execute_sql(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
        return {row[0] for row in rows}

    def maintain(self, vacuum_when: Callable[[int, int], bool]) -> dict[str, Any]:
        """ANALYZE; autovacuum does the rest, and there is no integrity check to run."""
        self.db.execute_sql("ANALYZE")
        return {
            "analyze": "done",
            "integrity": None,
            "note": "PostgreSQL: no integrity_check; vacuuming is autovacuum's",
        }


Dialect = SqliteDialect | PostgresDialect
