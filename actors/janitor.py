"""The janitor: housekeeping told by scheduled jobs (purge, maintenance, backups, reports).

Each job run is one mailbox entry; the work runs on one worker thread so the actor keeps answering pings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import peewee

from messagepusher.actors import backups, lifecycle, reports, store
from messagepusher.supervisor.actor import TICK, Job, PerJobPoolActor
from messagepusher.supervisor.config import RetentionSettings
from messagepusher.supervisor.db import is_sqlite, write_transaction
from messagepusher.supervisor.mailbox import FINISHED
from messagepusher.supervisor.models import (
    Alert,
    AuditLog,
    JobRun,
    MailboxEntry,
    Message,
    MessageEvent,
    Report,
    SupervisorEvent,
)
from messagepusher.supervisor.scheduler import finish_run

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

log = logging.getLogger(__name__)

DAY = 86400.0
# Between purge batches: lets other writers take SQLite's write lock (its busy handler
# polls, so a writer that never pauses could starve them).
BATCH_PAUSE_SECONDS = 0.02


# --- pure ------------------------------------------------------------------------------------


def retention_cutoffs(retention: RetentionSettings, now: float) -> dict[str, float]:
    """The time before which each kind of row is purged."""
    return {
        "messages": now - retention.messages_days * DAY,
        "events": now - retention.events_days * DAY,
        "mailbox": now - retention.mailbox_days * DAY,
        "audit": now - retention.audit_days * DAY,
        "alerts": now - retention.alerts_days * DAY,
        "job_runs": now - retention.job_runs_days * DAY,
        "supervisor_events": now - retention.supervisor_events_days * DAY,
        "reports": now - retention.reports_days * DAY,
    }


def should_vacuum(free_pages: int, pages: int, ratio: float) -> bool:
    """VACUUM pays once free pages pass `ratio` of the file."""
    return pages > 0 and free_pages / pages > ratio


def purge_targets(
    cutoffs: dict[str, float],
) -> list[tuple[str, type[peewee.Model], peewee.Expression]]:
    """(name, table, which rows) in purge order: what is past its age and finished."""
    return [
        (
            "messages",
            Message,
            # created_at narrows by its index; finished_at keeps a long-scheduled message
            # (and its callback) until it has been final for the whole retention.
            (Message.created_at < cutoffs["messages"])
            & (Message.finished_at < cutoffs["messages"])
            & Message.status.in_(lifecycle.MESSAGE_FINAL),
        ),
        ("events", MessageEvent, MessageEvent.at < cutoffs["events"]),
        (
            "mailbox",
            MailboxEntry,
            MailboxEntry.state.in_(FINISHED) & (MailboxEntry.updated_at < cutoffs["mailbox"]),
        ),
        ("audit", AuditLog, AuditLog.at < cutoffs["audit"]),
        ("alerts", Alert, (Alert.state == "resolved") & (Alert.resolved_at < cutoffs["alerts"])),
        (
            "job_runs",
            JobRun,
            (JobRun.started_at < cutoffs["job_runs"]) & (JobRun.outcome != "running"),
        ),
        ("supervisor_events", SupervisorEvent, SupervisorEvent.at < cutoffs["supervisor_events"]),
        ("reports", Report, Report.created_at < cutoffs["reports"]),
    ]


# --- the jobs (janitor worker thread) ------------------------------------------------------------


def purge(runtime: Runtime) -> dict[str, Any]:
    """Delete what is past its retention, `retention.batch_size` rows per short transaction.

    Sends go on meanwhile: each batch holds the write lock only for its own delete. Stops
    early (between batches) when the service is stopping or restoring.
    """
    retention = runtime.settings.retention
    removed: dict[str, int] = {}
    batches = 0
    for name, model, where in purge_targets(retention_cutoffs(retention, time.time())):
        removed[name] = 0
        while runtime.accepting:
            with write_transaction():
                ids = [
                    row[0]
                    for row in model.select(model.id)
                    .where(where)
                    .limit(retention.batch_size)
                    .tuples()
                ]
                if model is Message:
                    store.purge_messages(ids)
                elif model is MessageEvent:
                    store.purge_events(ids)
                elif ids:
                    model.delete().where(model.id.in_(ids)).execute()
            if not ids:
                break
            removed[name] += len(ids)
            batches += 1
            if len(ids) < retention.batch_size:
                break
            time.sleep(BATCH_PAUSE_SECONDS)
    return {
        "removed": removed,
        "batches": batches,
        "batch_size": retention.batch_size,
        "complete": runtime.accepting,
    }


def maintain(runtime: Runtime) -> dict[str, Any]:
    """SQLite: checkpoint, optimize, integrity check, VACUUM past the free-page threshold.

    PostgreSQL: ANALYZE (autovacuum does the rest). An integrity failure is returned in
    the run's detail, where the monitor's integrity rule finds it, and logged as an error.
    """
    db = runtime.db
    if not is_sqlite(db):
        db.execute_sql("ANALYZE")
        return {
            "analyze": "done",
            "integrity": None,
            "note": "PostgreSQL: no integrity_check; vacuuming is autovacuum's",
        }
    busy, wal_pages, checkpointed = db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    db.execute_sql("PRAGMA optimize")
    problems = [row[0] for row in db.execute_sql("PRAGMA integrity_check").fetchall()]
    integrity = "ok" if problems == ["ok"] else "; ".join(problems[:20])
    if integrity != "ok":
        log.error("database integrity check failed: %s", integrity)
    free = db.execute_sql("PRAGMA freelist_count").fetchone()[0]
    pages = db.execute_sql("PRAGMA page_count").fetchone()[0]
    vacuumed = should_vacuum(free, pages, runtime.settings.maintenance.vacuum_free_ratio)
    if vacuumed:
        db.execute_sql("VACUUM")
    return {
        "checkpoint": {
            "complete": not busy,
            "wal_pages": wal_pages,
            "checkpointed_pages": checkpointed,
        },
        "integrity": integrity,
        "free_pages": free,
        "pages": pages,
        "vacuumed": vacuumed,
    }


def backup(runtime: Runtime) -> dict[str, Any]:
    return backups.create_backup(runtime)


def daily_report(runtime: Runtime) -> dict[str, Any]:
    return reports.write_daily_reports(reports.previous_day(time.time()))


TASKS: dict[str, Callable[[Runtime], dict[str, Any]]] = {
    "retention_purge": purge,
    "db_maintenance": maintain,
    "backup": backup,
    "daily_report": daily_report,
}


class JanitorActor(PerJobPoolActor):
    """One worker thread runs the jobs; everything else runs in the janitor's actor thread.

    A job that raises is recorded as a failed run (outcome, error) and not retried: its next
    period is the retry. Leases of a long job are extended on the janitor's own timer, so no
    other node takes the entry over while it runs.
    """

    name = "janitor"

    def configured_workers(self) -> int:
        return 1

    def setup(self) -> None:
        super().setup()
        self.timer: threading.Timer | None = None
        self._schedule_tick()

    def _schedule_tick(self) -> None:
        self.timer = threading.Timer(self.settings.mailbox.lease_seconds / 3, self._tick)
        self.timer.daemon = True
        self.timer.start()

    def _tick(self) -> None:
        if self.actor_ref.is_alive():
            self.actor_ref.tell(TICK)
            self._schedule_tick()

    def teardown(self, crashed: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
        super().teardown(crashed)

    def work(self, job: Job) -> tuple[float, float, dict[str, Any] | None, str | None]:
        """Worker thread: run the job; returns (started, finished, detail, error) and never raises."""
        started = time.time()
        task = TASKS.get(job.entry.kind)
        if task is None:
            return started, started, None, f"no job {job.entry.kind!r}"
        try:
            detail, error = task(self.runtime), None
        except Exception as exc:  # noqa: BLE001 - recorded on the run; the next period retries
            log.exception("janitor: %s failed", job.entry.kind)
            detail, error = None, f"{type(exc).__name__}: {exc}"
        return started, time.time(), detail, error

    def apply(self, job: Job) -> set[str]:
        """Actor thread, in the write transaction: finish the run and ack the entry."""
        started, finished, detail, error = job.result
        run_id = job.entry.payload.get("run_id")
        if run_id is not None:
            finish_run(run_id, started, finished, error, detail)
        self.mailbox.ack(job.entry.id, self.owner)
        return set()

    def after_commit(self, jobs: list[Job]) -> None:
        for job in jobs:
            error = job.result[3]
            self.runtime.metrics.job_runs.labels(job.entry.kind, "failed" if error else "ok").inc()
            log.log(
                logging.ERROR if error else logging.INFO,
                "janitor: %s %s in %.2fs%s",
                job.entry.kind,
                "failed" if error else "done",
                job.result[1] - job.result[0],
                f": {error}" if error else "",
            )
