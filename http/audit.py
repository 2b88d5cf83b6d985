"""The audit trail: one row per mutation and per sensitive read, written in batches off the request path.

AuditMiddleware decides what is recorded (never a request body); AuditWriter inserts the rows.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import falcon
import peewee

from messagepusher.http.auth import SAFE_METHODS
from messagepusher.http.routes import Op, Route
from messagepusher.supervisor.clock import Clock, SystemClock
from messagepusher.supervisor.db import execute_many, write_transaction
from messagepusher.supervisor.models import AuditLog

log = logging.getLogger(__name__)

DENIED = frozenset({401, 403, 429})
OUTCOMES = ("ok", "denied", "error")
_STOP = object()

# One prepared statement for a batch: peewee's insert_many builds every row's SQL in Python,
# which cost more CPU than the insert itself (one audit row per POST on the hot path).
COLUMNS = ("at", "user_id", "username", "role", "action", "target", "outcome", "address", "detail")
INSERT_ROWS = (
    f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    return "denied" if status in DENIED else "error"


def note(req: falcon.Request, target: str | None = None, **detail: Any) -> None:
    """Let a resource name the audit row's target (e.g. a created id) and add non-secret detail.

    Never pass a password, key, token or config value here.
    """
    if target is not None:
        req.context.audit_target = str(target)
    if detail:
        if getattr(req.context, "audit_detail", None) is None:
            req.context.audit_detail = {}
        req.context.audit_detail.update(detail)


class AuditWriter:
    """Inserts queued audit rows from one background thread, many rows per transaction.

    HTTP threads call `record`, which never touches the database. The thread `audit-writer`
    gathers rows for at most `interval` seconds after the first one arrives, then inserts
    them in one transaction; `close` writes what is left. A crash (kill -9) therefore loses
    at most the last `interval` of audit rows. A failed insert is logged and retried with
    the next batch; beyond `max_pending` unwritten rows the oldest are dropped (and logged).
    """

    def __init__(
        self,
        interval: float = 0.5,
        batch: int = 500,
        max_pending: int = 100_000,
        clock: Clock | None = None,
    ):
        self.clock: Clock = clock or SystemClock()
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._closing = threading.Event()
        self._closed = False

    def start(self) -> AuditWriter:
        self._thread.start()
        return self

    def record(self, row: dict[str, Any]) -> None:
        """Queue one row; runs in any thread and never blocks."""
        self._queue.put(row)

    def close(self, timeout: float = 10.0) -> None:
        """Write every queued row and stop the thread; runs in the stopping thread (main or atexit)."""
        if self._closed or not self._thread.is_alive():
            return
        self._closed = True
        self._queue.put(_STOP)
        self._closing.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        """The audit-writer thread: wait for a row, let more gather, write them all.

        While rows gather it sleeps out the interval instead of waking for each row (at
        100 requests a second a wake per row was three context switches per request);
        `close` cuts the wait short.
        """
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                stopping = True
            else:
                self._pending.append(first)
                self._closing.wait(self.interval)
                stopping = self._take_queued()
            self._write()

    def _take_queued(self) -> bool:
        """The audit-writer thread: move every queued row to pending; True when `close` asked."""
        stopping = False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return stopping
            if item is _STOP:
                stopping = True
            else:
                self._pending.append(item)

    def _write(self) -> None:
        while self._pending:
            chunk = self._pending[: self.batch]
            try:
                with write_transaction(), peewee.__exception_wrapper__:
                    execute_many(INSERT_ROWS, [_values(row) for row in chunk])
            except peewee.DatabaseError as exc:
                log.error(
                    "could not write %d audit rows (will retry with the next batch): %s",
                    len(chunk),
                    exc,
                )
                overflow = len(self._pending) - self.max_pending
                if overflow > 0:
                    del self._pending[:overflow]
                    log.error(
                        "dropped the %d oldest unwritten audit rows: the database keeps refusing them",
                        overflow,
                    )
                return
            del self._pending[: len(chunk)]


def _values(row: dict[str, Any]) -> tuple:
    """One queued row as the statement's parameters, defaults and JSON as the model has them."""
    values = tuple(row.get(c, _DEFAULTS.get(c)) for c in COLUMNS)
    return (*values[:-1], _to_json(values[-1]))


_DEFAULTS = {c: AuditLog._meta.fields[c].default for c in COLUMNS}
_to_json = AuditLog.detail.db_value


class AuditMiddleware:
    """Records every mutation that reached a route (whatever its outcome) and every Op(audit=…) read.

    Must come before the auth middleware in the list, so that its process_resource runs even
    when authentication fails. Runs in the HTTP worker thread and never raises.
    """

    def __init__(self, routes: list[Route], writer: AuditWriter):
        self.ops: dict[tuple[str, str], Op] = {
            (r.template, m): op for r in routes for m, op in r.ops.items()
        }
        self.writer = writer

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource, params
    ) -> None:
        # A path token (an incoming hook's URL) is a secret: never an audit target.
        req.context.audit_params = {k: v for k, v in (params or {}).items() if k != "token"}

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool
    ) -> None:
        if resource is None:
            return
        op = self.ops.get((req.uri_template, req.method))
        if op is None:
            return
        if req.method in SAFE_METHODS:
            if not op.audit:
                return
            action = op.audit
        else:
            action = f"{req.method} {req.uri_template}"
        status = resp.status_code
        detail: dict[str, Any] = {"status": status}
        media = resp.media if status >= 400 else None
        if isinstance(media, dict) and isinstance(media.get("error"), dict):
            detail["error"] = media["error"].get("code")
        principal = getattr(req.context, "principal", None)
        if principal is not None:
            if principal.key_id is not None:
                detail["key_id"] = principal.key_id
            detail["via"] = principal.via
        detail.update(getattr(req.context, "audit_detail", None) or {})
        target = getattr(req.context, "audit_target", None)
        if target is None:
            target = ",".join(str(v) for v in getattr(req.context, "audit_params", {}).values())
        # A refused path value is recorded too; PostgreSQL text cannot hold its NUL.
        target = target.replace("\x00", "\\x00")
        self.writer.record(
            {
                "at": self.writer.clock.now(),
                "user_id": principal.user_id if principal else None,
                "username": principal.username if principal else "",
                "role": principal.role if principal else "",
                "action": action[:64],
                "target": target[:255],
                "outcome": outcome_of(status),
                "address": req.remote_addr or "",
                "detail": detail,
            }
        )
