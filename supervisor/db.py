"""Opening the database named by `database.url`: SQLite (WAL) or PostgreSQL.

Every model binds to `database`, a proxy initialised once per process by `open_database`;
where the two engines differ is `supervisor/dialect.py`'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qsl, unquote, urlparse

import peewee
from playhouse.pool import PooledPostgresqlDatabase

from messagepusher.supervisor.dialect import (
    Dialect,
    PostgresDialect,
    SqliteDialect,
    without_file,
)

database = peewee.DatabaseProxy()

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "VACUUM")


class ProcessWriteLock:
    """One writer at a time among the processes that share a database file.

    A POSIX record lock (`lockf`) on a file beside the database: a process blocked on it
    sleeps in the kernel and wakes as soon as the holder lets go, where SQLite's own busy
    handler polls with sleeps growing to 100 ms. The lock belongs to the process: the
    kernel drops it when its holder dies (kill -9 included), and a forked child holds
    nothing and opens its own descriptor. One per file and process (`for_file`), counted,
    so database objects of one process on one file do not release each other's hold. A
    process that writes the file without it (sqlite3 on the command line) still meets
    SQLite's own lock and busy timeout. Thread-safe.
    """

    _by_path: ClassVar[dict[str, ProcessWriteLock]] = {}
    _registry = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self._pid = -1
        self._fd = -1
        self._holders = 0
        self._guard = threading.Lock()

    @classmethod
    def for_file(cls, database_path: str) -> ProcessWriteLock:
        key = os.path.realpath(database_path)
        with cls._registry:
            return cls._by_path.setdefault(key, cls(f"{key}-writer"))

    def acquire(self) -> None:
        """Caller's thread: blocks until no other process writes; raises OSError if the
        file beside the database cannot be opened."""
        if self._pid != os.getpid():  # first use, or a forked child holding nothing
            self._guard, self._holders, self._pid = threading.Lock(), 0, os.getpid()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with self._guard:
            if self._holders == 0:
                fcntl.lockf(self._fd, fcntl.LOCK_EX)
            self._holders += 1

    def release(self) -> None:
        """Caller's thread: the last holder in this process lets the next process write."""
        with self._guard:
            self._holders -= 1
            if self._holders == 0:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)


class WriteLockTimes:
    """How long this process's writers waited for the SQLite write lock and how long they held it.

    Summed over every hold (a transaction, or a lone write) since the database object was
    made; `observer`, when set, hears each hold as it ends (the runtime counts them in
    Prometheus). `record` runs in the thread that holds the write lock, before letting go,
    so one thread at a time; reads are plain attribute reads (a snapshot at most one hold
    behind). `notify` runs in the same thread once the lock is let go, so the observer's
    work does not lengthen the hold; an observer that raises propagates to the writer,
    after the hold is counted and the lock let go.
    """

    def __init__(self) -> None:
        self.waited_seconds = 0.0
        self.held_seconds = 0.0
        self.holds = 0
        self.observer: Callable[[float, float], None] | None = None

    def record(self, waited: float, held: float) -> None:
        self.waited_seconds += waited
        self.held_seconds += held
        self.holds += 1

    def notify(self, waited: float, held: float) -> None:
        if self.observer is not None:
            self.observer(waited, held)


class SerializedSqliteDatabase(peewee.SqliteDatabase):
    """SQLite with one writer at a time, queued on a Python lock and across processes.

    SQLite's own busy handler polls with sleeps growing to 100 ms, so writers that meet at
    its lock lose tens of milliseconds; a lock handed over at once does not. Every
    transaction begins IMMEDIATE under the lock, and a write outside a transaction takes
    it for its one statement. The threads of one process queue on an RLock; processes
    sharing the file (`serve --processes N`, the CLI beside a running server) then queue
    on a `ProcessWriteLock` beside the file. `lock_times` sums the waits for the lock and
    the holds of it (a lock held nearly all the time is what limits the writes); `clock` is
    the monotonic seconds source it measures with.

    Every transaction of the process runs on one writer connection, lent to the thread that
    holds the lock for the length of its transaction; reads outside a transaction stay on
    each thread's own. Two connections writing in turn would each throw away the page cache
    the other's write made stale (measured: 0.12 ms more per ingest commit and 0.07 ms per
    write-back at 100 messages a second). A lone write outside a transaction stays on its
    thread's connection: its cursor may still be read after the lock is let go.
    """

    def __init__(self, *args, clock: Callable[[], float] = time.perf_counter, **kwargs):
        super().__init__(*args, **kwargs)
        self.dialect: Dialect = SqliteDialect(self)
        self._write_lock = threading.RLock()
        # This thread's hold: open transactions (count), when it began (since), its wait.
        self._holding = threading.local()
        self._clock = clock
        self.lock_times = WriteLockTimes()
        self._writer: sqlite3.Connection | None = None  # guarded by _write_lock
        self._process_lock = (
            None if without_file(str(self.database)) else ProcessWriteLock.for_file(self.database)
        )

    def _acquire(self) -> None:
        """This thread's turn to write: the process's RLock, then the lock shared with other
        processes (which counts its holders, so nested holds lock the file once)."""
        asked = self._clock()
        self._write_lock.acquire()
        if self._process_lock is not None:
            try:
                self._process_lock.acquire()
            except BaseException:
                self._write_lock.release()
                raise
        self._holding.since = self._clock()
        self._holding.waited = self._holding.since - asked

    def _let_go(self) -> None:
        """Count the hold that ends, let the next writer (of this process, then of any) go,
        then tell the observer."""
        waited, held = self._holding.waited, self._clock() - self._holding.since
        try:
            self.lock_times.record(waited, held)
        finally:
            if self._process_lock is not None:
                self._process_lock.release()
            self._write_lock.release()
        self.lock_times.notify(waited, held)

    def begin(self, lock_type: str | None = None) -> None:
        self._acquire()
        self._holding.count = getattr(self._holding, "count", 0) + 1
        try:
            if self._holding.count == 1:
                self._borrow_writer()
            super().begin(lock_type or "IMMEDIATE")
        except BaseException:
            self._release()
            raise

    def commit(self):
        try:
            return super().commit()
        finally:
            self._release()

    def rollback(self):
        try:
            return super().rollback()
        finally:
            self._release()

    def _release(self) -> None:
        if getattr(self._holding, "count", 0) > 0:
            self._holding.count -= 1
            try:
                if self._holding.count == 0:
                    self._return_writer()
            finally:
                self._let_go()

    def _borrow_writer(self) -> None:
        """Lock holder's thread: its peewee state points at the writer connection until
        `_return_writer`; opened on first use. Raises what opening the connection raises."""
        if self._writer is None:
            self._writer = self._connect()
        state = self._state
        self._holding.own = (state.conn, state.closed)
        state.conn, state.closed = self._writer, False

    def _return_writer(self) -> None:
        """Lock holder's thread, before letting go: its own connection (or none) again."""
        own = getattr(self._holding, "own", None)
        if own is not None:
            self._state.conn, self._state.closed = own
            self._holding.own = None

    def close(self) -> bool:
        """Close this thread's connection, and the writer connection once no thread writes
        with it (the next transaction opens it again). Caller's thread; waits for a writer."""
        closed = super().close()
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        return closed

    @contextlib.contextmanager
    def writes_held(self):
        """Keep every writer of this process waiting (e.g. while another connection rewrites the file)."""
        with self._write_lock:
            yield

    def execute_sql(self, sql, params=None, commit=None):
        if not self.in_transaction() and sql.lstrip()[:7].upper().startswith(_WRITES):
            self._acquire()
            try:
                return super().execute_sql(sql, params)
            finally:
                self._let_go()
        return super().execute_sql(sql, params)


class PostgresDatabase(PooledPostgresqlDatabase):
    """PostgreSQL through a pool of connections, one per thread that uses it.

    Its writers do not queue on one lock, so there are no `lock_times` to keep.
    """

    lock_times: WriteLockTimes | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dialect: Dialect = PostgresDialect(self)


class DatabaseUrlError(ValueError):
    """The URL cannot be opened; the message says why and what to write instead."""


def make_database(url: str, busy_timeout_ms: int = 10_000) -> peewee.Database:
    """Build (but do not connect) a peewee database for a sqlite:/// or postgresql:// URL."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        raw = unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""
        if not raw:
            raise DatabaseUrlError(f"database.url {url!r}: write sqlite:///path/to/file.db")
        if raw != ":memory:":
            Path(raw).parent.mkdir(parents=True, exist_ok=True)
        return SerializedSqliteDatabase(
            raw,
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": busy_timeout_ms,
                "cache_size": -16_000,
            },
            timeout=busy_timeout_ms / 1000,
            check_same_thread=False,
        )
    if parsed.scheme in ("postgresql", "postgres"):
        name = parsed.path.lstrip("/")
        if not name:
            raise DatabaseUrlError(
                f"database.url {url!r}: name the database, e.g. postgresql://user@host:5432/dbname"
            )
        return PostgresDatabase(
            name,
            user=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 5432,
            max_connections=64,
            stale_timeout=300,
            timeout=30,
            **dict(parse_qsl(parsed.query)),
        )
    raise DatabaseUrlError(f"database.url {url!r}: only sqlite:/// and postgresql:// are supported")


def open_database(url: str, busy_timeout_ms: int = 10_000) -> peewee.Database:
    """Initialise the process-wide proxy and return the real database."""
    db = make_database(url, busy_timeout_ms)
    database.initialize(db)
    return db


def write_transaction(db: peewee.Database | None = None):
    """A write transaction on `db` (default: the process's database), begun as its dialect says."""
    return (db if db is not None else database).dialect.write_transaction()


def execute_many(sql: str, rows: list[tuple]) -> None:
    """Run one statement for many rows on this thread's connection (`?` placeholders).

    Used on hot paths where building a peewee query per row costs more than the write.
    """
    if not rows:
        return
    db = database.obj
    db.cursor().executemany(db.dialect.sql(sql), rows)


def select_rows(sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of one SELECT written with `?` placeholders, on this thread's connection."""
    db = database.obj
    return db.execute_sql(db.dialect.sql(sql), params).fetchall()


def execute(sql: str, params: tuple = ()) -> int:
    """One write statement written with `?` placeholders; returns the rows it changed."""
    db = database.obj
    return db.execute_sql(db.dialect.sql(sql), params).rowcount


def placeholders(n: int) -> str:
    return ", ".join("?" * n)


def insert_returning_ids(
    table: str,
    columns: tuple[str, ...],
    rows: list[tuple],
    chunk: int = 400,
    db: peewee.Database | None = None,
) -> list[int]:
    """Insert rows with multi-row VALUES and return their new ids in the rows' order.

    Ids of one statement are assigned in VALUES order on SQLite (rowid) and PostgreSQL
    (the sequence), so sorting what RETURNING gives back restores that order.
    """
    db = db if db is not None else database.obj
    one = "(" + ", ".join([db.dialect.param] * len(columns)) + ")"
    head = f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES '
    ids: list[int] = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        params = [value for row in part for value in row]
        cursor = db.execute_sql(head + ", ".join([one] * len(part)) + " RETURNING id", params)
        ids.extend(sorted(r[0] for r in cursor.fetchall()))
    return ids
