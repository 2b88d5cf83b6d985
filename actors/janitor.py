"""The janitor: housekeeping told by scheduled jobs (purge, maintenance, backups, reports).

Each job run is one mailbox entry; the work runs on one worker thread so the actor keeps answering
pings. Which function a job runs is supervisor/jobs.py's `JOBS`; the functions are here.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import peewee

from messagepusher.messages import lifecycle, store
from messagepusher.operations import reports
from messagepusher.supervisor.actor import TICK, Job, PerJobPoolActor
from messagepusher.supervisor.config import RetentionSettings
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.jobs import task_of
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
    for name, model, where in purge_targets(retention_cutoffs(retention, runtime.clock.now())):
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
    ratio = runtime.settings.maintenance.vacuum_free_ratio
    detail = runtime.db.dialect.maintain(lambda free, pages: should_vacuum(free, pages, ratio))
    if detail["integrity"] not in (None, "ok"):
        log.error("database integrity check failed: %s", detail["integrity"])
    return detail


def daily_report(runtime: Runtime) -> dict[str, Any]:
    """Janitor worker thread: yesterday's reports (UTC day). Database errors raise."""
    now = runtime.clock.now()
    return reports.write_daily_reports(reports.previous_day(now), runtime.clock)


class JanitorActor(PerJobPoolActor):
    """One worker thread runs the jobs; everything else runs in the janitor's actor thread.

    A job that raises is recorded as a failed run (outcome, error) and not retried: its next
    period is the retry. Leases of a long job are extended on a timer (a TICK every third of
    the lease, told by the process ticker and handled in the actor thread), so no other node
    takes the entry over while it runs.
    """

    name = "janitor"

    def configured_workers(self) -> int:
        """Actor thread: one worker, so jobs never run beside each other on this node."""
        return 1

    def setup(self) -> None:
        """Actor thread: the worker pool, and the lease-extension timer. Raising stops the actor."""
        super().setup()
        self.timers.every("lease", self.settings.mailbox.lease_seconds / 3, TICK)

    def work(self, job: Job) -> tuple[float, float, dict[str, Any] | None, str | None]:
        """Worker thread: run the job; returns (started, finished, detail, error) and never raises."""
        started = self.clock.now()
        try:
            task = task_of(job.entry.kind)
        except KeyError:
            return started, started, None, f"no job {job.entry.kind!r}"
        try:
            detail, error = task(self.runtime), None
        except Exception as exc:  # noqa: BLE001 - recorded on the run; the next period retries
            log.exception("janitor: %s failed", job.entry.kind)
            detail, error = None, f"{type(exc).__name__}: {exc}"
        return started, self.clock.now(), detail, error

    def apply(self, job: Job) -> set[str]:
        """Actor thread, in the write transaction: finish the run and ack the entry.

        Raising rolls the batch back and crashes the actor; the entry is recovered on restart.
        """
        started, finished, detail, error = job.result
        run_id = job.entry.payload.get("run_id")
        if run_id is not None:
            finish_run(run_id, started, finished, error, detail)
        self.mailbox.ack(job.entry.id, self.owner)
        return set()

    def after_commit(self, jobs: list[Job]) -> None:
        """Actor thread, after the commit: count and log each run. Raising crashes the actor."""
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
