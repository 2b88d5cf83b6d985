"""Online backups of the SQLite database (sqlite3's backup API), their rotation, and restores.

PostgreSQL is backed up with pg_dump: these functions refuse it with a message that says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote

from messagepusher.supervisor.config import Settings
from messagepusher.supervisor.timefmt import to_rfc3339

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

log = logging.getLogger(__name__)

NAME = re.compile(r"^messagepusher-\d{8}T\d{6}\.\d{3}Z\.db$")
_restoring = threading.Lock()


class BackupError(Exception):
    """A backup or restore that cannot be done; str() says why and what to do. `status` is for HTTP."""

    def __init__(self, message: str, status: int = 409, code: str = "backup_refused"):
        super().__init__(message)
        self.status = status
        self.code = code


# --- pure --------------------------------------------------------------------------------------


def backup_name(now: float) -> str:
    """messagepusher-20261128T030000.123Z.db for a UTC time; names sort by time."""
    return (
        time.strftime("messagepusher-%Y%m%dT%H%M%S", time.gmtime(now))
        + f".{int(now * 1000) % 1000:03d}Z.db"
    )


def to_remove(names: list[str], keep: int) -> list[str]:
    """The backups rotation deletes: all but the `keep` newest."""
    ordered = sorted((n for n in names if NAME.match(n)), reverse=True)
    return ordered[keep:]


def sqlite_file(settings: Settings) -> Path:
    """The database file, or BackupError for PostgreSQL."""
    url = settings.database_url
    if not url.startswith("sqlite:///"):
        raise BackupError(
            "backups here cover SQLite only; back up PostgreSQL with pg_dump (and restore with pg_restore)",
            status=409,
            code="not_sqlite",
        )
    return Path(unquote(url[len("sqlite:///") :]))


def backup_dir(settings: Settings) -> Path:
    return settings.data_path / "backups"


# --- taking and listing --------------------------------------------------------------------


def create_backup(runtime: Runtime) -> dict[str, Any]:
    """Copy the live database into data_dir/backups and rotate; returns the new backup's info.

    Runs in the caller's thread (janitor worker, HTTP worker, CLI). The copy reads the whole
    database in one read transaction, so it is a consistent snapshot while writers go on
    (WAL). Raises BackupError when the database is not SQLite or the copy fails its check.
    """
    settings = runtime.settings
    source_path = sqlite_file(settings)
    directory = backup_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / backup_name(runtime.clock.now())
    partial = target.with_name(target.name + ".partial")
    source = sqlite3.connect(source_path, timeout=settings.database.busy_timeout_ms / 1000)
    copy = sqlite3.connect(partial)
    try:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        check = copy.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        check = str(exc)
    finally:
        copy.close()
        source.close()
    if check != "ok":
        partial.unlink(missing_ok=True)
        raise BackupError(
            f"the backup failed ({check}): check the free space under {directory}, and the "
            "database's integrity with the db_maintenance job",
            status=500,
            code="backup_failed",
        )
    os.replace(partial, target)
    removed = rotate(directory, settings.backup.keep)
    log.info(
        "backup %s taken (%d bytes); rotated out: %s",
        target.name,
        target.stat().st_size,
        ", ".join(removed) or "none",
    )
    return {**_info(target), "removed": removed}


def rotate(directory: Path, keep: int) -> list[str]:
    names = [p.name for p in directory.iterdir()]
    removed = to_remove(names, keep)
    for name in removed:
        (directory / name).unlink(missing_ok=True)
    return removed


def list_backups(runtime: Runtime) -> list[dict[str, Any]]:
    """Backups in data_dir/backups, newest first."""
    directory = backup_dir(runtime.settings)
    if not directory.is_dir():
        return []
    return [_info(p) for p in sorted(directory.iterdir(), reverse=True) if NAME.match(p.name)]


def _info(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"name": path.name, "bytes": stat.st_size, "created_at": to_rfc3339(stat.st_mtime)}


def _checked(runtime: Runtime, name: str) -> Path:
    """The path of backup `name` after a quick_check; BackupError 404/422 otherwise."""
    path = backup_dir(runtime.settings) / name
    if not NAME.match(name) or not path.is_file():
        raise BackupError(
            f"no backup {name!r}; list them with GET /api/v1/admin/backups or main.py backup list",
            status=404,
            code="not_found",
        )
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            check = str(exc)
    if check != "ok":
        raise BackupError(
            f"backup {name} is damaged ({check}); choose another", status=422, code="backup_damaged"
        )
    return path


# --- the serving lock: a restore offline must not run under a live server -------------------------


def _lock_path(settings: Settings) -> Path:
    return sqlite_file(settings).with_name(sqlite_file(settings).name + "-serving.lock")


def hold_serving_lock(settings: Settings) -> IO[str] | None:
    """Main thread at `serve`: a shared lock beside the database, held until the process ends.

    Several servers may share a database; an offline restore takes the lock exclusively,
    so it refuses while any server runs, and a server refuses to start during a restore.
    Returns the open file (keep it), None for PostgreSQL; raises BackupError while a restore runs.
    """
    try:
        path = _lock_path(settings)
    except BackupError:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise BackupError(
            f"a restore is running on {sqlite_file(settings)}; start the server when it has finished"
        ) from None
    return handle


def restore_backup_offline(runtime: Runtime, name: str) -> None:
    """CLI, server stopped: replace the database file with backup `name`.

    Refuses (BackupError) while any server holds the serving lock of this database: stop
    it first, or restore through the API. The -wal and -shm files of the old database go too.
    """
    settings = runtime.settings
    db_path = sqlite_file(settings)
    source = _checked(runtime, name)
    lock_path = _lock_path(settings)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(
                f"a server is running on {db_path}; stop it first, or restore while it runs with "
                f"POST /api/v1/admin/backups/{name}/restore",
                status=409,
                code="server_running",
            ) from None
        staged = db_path.with_name(db_path.name + ".restoring")
        shutil.copyfile(source, staged)
        for suffix in ("-wal", "-shm"):
            db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
        os.replace(staged, db_path)
    log.info("restored %s from backup %s (offline)", db_path, name)


# --- restore while serving --------------------------------------------------------------------


def restore_backup_online(runtime: Runtime, name: str) -> dict[str, Any]:
    """HTTP worker thread: restore backup `name` into the live database, then carry on serving.

    The pause around the copy is the runtime's (`Runtime.while_stopped`: new work refused,
    actors stopped with their leases released, then migrated, re-configured and started
    again, with the hooks upper layers registered, such as HTTP dropping its key cache). The
    backup is copied in through SQLite's backup API, so other connections of this process
    see the restored content. Raises BackupError (unknown or damaged backup, PostgreSQL, a
    restore already running) before anything is stopped; a failure of the copy itself
    leaves the database as it was.
    """
    db_path = sqlite_file(runtime.settings)
    source = _checked(runtime, name)
    if not _restoring.acquire(blocking=False):
        raise BackupError(
            "a restore is already running; wait for it to finish",
            status=409,
            code="restore_running",
        )
    started = runtime.clock.monotonic()
    timeout = runtime.settings.database.busy_timeout_ms / 1000
    try:
        runtime.while_stopped(
            f"restoring backup {name}", lambda: _copy_into(source, db_path, timeout)
        )
    finally:
        _restoring.release()
    seconds = round(runtime.clock.monotonic() - started, 3)
    log.warning("database restored from backup %s in %.1fs", name, seconds)
    return {"restored": name, "duration_seconds": seconds}


def _copy_into(source: Path, db_path: Path, timeout: float) -> None:
    """Copy the backup over the live database, keeping the audit rows written since the backup.

    A restore rolls the data back, not the record of who did what: audit rows newer than the
    backup's newest are read first and written back after the copy, with their ids.
    """
    backup = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    live = sqlite3.connect(db_path, timeout=timeout)
    try:
        columns, kept = _audit_after(live, _newest_audit_id(backup))
        backup.backup(live)  # one step: one write transaction, all of it or nothing
    except sqlite3.OperationalError as exc:
        live.close()
        raise BackupError(
            f"the backup could not be copied in ({exc}); nothing was changed. If its page size "
            "differs from the database's, restore it offline with main.py backup restore",
            status=500,
            code="restore_failed",
        ) from None
    finally:
        backup.close()
    with contextlib.closing(live):
        _put_back_audit(live, columns, kept)
        live.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _newest_audit_id(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COALESCE(MAX(id), 0) FROM audit_log").fetchone()[0]


def _audit_after(conn: sqlite3.Connection, newest: int) -> tuple[list[str], list[tuple]]:
    """The column names and rows of audit_log with an id above `newest`, oldest first."""
    cursor = conn.execute("SELECT * FROM audit_log WHERE id > ? ORDER BY id", (newest,))
    return [d[0] for d in cursor.description], cursor.fetchall()


def _put_back_audit(conn: sqlite3.Connection, columns: list[str], rows: list[tuple]) -> None:
    """Write the kept audit rows into the restored table (the columns both schemas have).

    The restore itself has already succeeded: a failure here is logged, not raised.
    """
    if not rows:
        return
    present = {r[1] for r in conn.execute("PRAGMA table_info(audit_log)")}
    keep = [i for i, name in enumerate(columns) if name in present]
    names = ", ".join(columns[i] for i in keep)
    marks = ", ".join("?" * len(keep))
    try:
        with conn:
            conn.executemany(
                f"INSERT INTO audit_log ({names}) VALUES ({marks})",
                [tuple(row[i] for i in keep) for row in rows],
            )
    except sqlite3.DatabaseError as exc:
        log.error(
            "restore: could not keep %d audit rows written since the backup: %s", len(rows), exc
        )
