"""Scheduled jobs: APScheduler triggers from `schedule:`, one lock row per job, and run records.

A job run only queues a mailbox entry for its actor; the actor does the work and finishes the run.
Which jobs exist, and which actor runs each, is supervisor/jobs.py's `JOBS`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import peewee
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from messagepusher.supervisor.config import ConfigError, JobSchedule, parse_duration
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.jobs import JOBS
from messagepusher.supervisor.models import JobLock, JobRun
from messagepusher.supervisor.timefmt import to_rfc3339

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A cron run that starts late still belongs to its minute (cron fires at second 0).
CRON_MISFIRE_GRACE_SECONDS = 30


# --- pure: triggers and periods ------------------------------------------------------------


def trigger_for(spec: JobSchedule) -> BaseTrigger:
    """The APScheduler trigger of a job. Raises ValueError for a cron it cannot parse.

    Interval triggers count from the epoch, so every process fires at the same instants
    and a run's period key is the same on every node.
    """
    if spec.every:
        return IntervalTrigger(seconds=parse_duration(spec.every), start_date=EPOCH, timezone=UTC)
    return CronTrigger.from_crontab(spec.cron, timezone=UTC)


def misfire_grace(spec: JobSchedule) -> int:
    """Seconds a fire may be late and still run: within its own period, so its key stays right."""
    if spec.every:
        return max(1, min(CRON_MISFIRE_GRACE_SECONDS, int(parse_duration(spec.every) / 2)))
    return CRON_MISFIRE_GRACE_SECONDS


def period_key(spec: JobSchedule, now: float) -> str:
    """The period a run at `now` belongs to; one string per period on every node."""
    if spec.every:
        seconds = parse_duration(spec.every)
        return f"every {seconds:g}s #{int(now // seconds)}"
    return "cron " + time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(now))


def schedule_problem(name: str, spec: JobSchedule) -> str | None:
    """One config-error line for a job this scheduler cannot run, else None."""
    if name not in JOBS:
        return f"config error: schedule.{name}: unknown job; known jobs: {', '.join(sorted(JOBS))}"
    try:
        trigger_for(spec)
    except ValueError as exc:
        return f"config error: schedule.{name}.cron = {spec.cron!r}: {exc}"
    return None


def check_schedule(schedule: dict[str, JobSchedule]) -> None:
    """Raise ConfigError for the first job that cannot run (unknown name, unusable cron)."""
    for name, spec in schedule.items():
        problem = schedule_problem(name, spec)
        if problem:
            raise ConfigError(problem)


# --- the lock and the run records (caller's thread and transaction) ----------------------------


def take_lock(name: str, owner: str, period: str, now: float, lock_seconds: float) -> bool:
    """Take job `name`'s lock for `period`; call inside a write transaction.

    Succeeds when the period has not run yet and the lock is ours or has expired (its
    holder stopped renewing it: stopped, crashed, killed). Both conditions sit in one
    UPDATE, so two nodes racing for one period cannot both win.
    """
    JobLock.insert(name=name, owner="", period_key="", expires_at=0).on_conflict_ignore().execute()
    return bool(
        JobLock.update(owner=owner, period_key=period, expires_at=now + lock_seconds)
        .where(
            (JobLock.name == name)
            & (JobLock.period_key != period)
            & ((JobLock.owner == owner) | (JobLock.expires_at <= now))
        )
        .execute()
    )


def finish_run(
    run_id: int, started: float, finished: float, error: str | None, detail: dict[str, Any] | None
) -> None:
    """Record the end of a run: called by the actor that did the work, in its transaction."""
    JobRun.update(
        finished_at=finished,
        outcome="failed" if error else "ok",
        error=error,
        detail=detail,
        duration_seconds=round(finished - started, 3),
    ).where(JobRun.id == run_id).execute()


def run_view(run: JobRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "job": run.name,
        "owner": run.owner,
        "period": run.period_key,
        "started_at": to_rfc3339(run.started_at),
        "finished_at": to_rfc3339(run.finished_at),
        "outcome": run.outcome,
        "error": run.error,
        "duration_seconds": run.duration_seconds,
        "detail": run.detail,
    }


class UnknownJob(KeyError):
    """No job by that name; str() lists the known ones."""

    def __str__(self) -> str:
        return f"no job {self.args[0]!r}; jobs: {', '.join(sorted(JOBS))}"


class JobScheduler:
    """APScheduler glue for one process.

    start, stop, pause, resume, reschedule, run_now and jobs run in the caller's thread;
    `fire` runs in APScheduler's worker threads, where a database error is logged and the
    period skipped (the next one tries again). run_now and jobs raise database errors to
    their caller; stop only logs them (unreleased locks expire on their own).
    """

    def __init__(self, runtime: Runtime, now: Callable[[], float] | None = None):
        self.runtime = runtime
        self.now = now or runtime.clock.now
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1}
        )
        self._lock = threading.Lock()

    def start(self) -> None:
        self.scheduler.start()
        self.reschedule(self.runtime.settings.schedule)

    def reschedule(self, schedule: dict[str, JobSchedule]) -> None:
        """Replace every job's trigger with `schedule` (start, run-time config, SIGHUP)."""
        with self._lock:
            self.scheduler.remove_all_jobs()
            for name, spec in schedule.items():
                problem = schedule_problem(name, spec)
                if problem:
                    log.error("scheduler: %s; the job is not scheduled", problem)
                    continue
                if spec.enabled:
                    self.scheduler.add_job(
                        self.fire,
                        trigger_for(spec),
                        args=(name,),
                        id=name,
                        name=name,
                        misfire_grace_time=misfire_grace(spec),
                        replace_existing=True,
                    )
        log.info("scheduler: %d jobs scheduled", len(self.scheduler.get_jobs()))

    def pause(self) -> None:
        self.scheduler.pause()

    def resume(self) -> None:
        self.scheduler.resume()

    def stop(self) -> None:
        """Stop firing and hand our locks back, so another node takes the next period at once.

        Waits for a `fire` already running (it only queues the job: one short transaction);
        otherwise it could take its lock after the release and keep other nodes out for
        `scheduler.lock_seconds`.
        """
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        try:
            JobLock.update(expires_at=self.now()).where(
                JobLock.owner == self.runtime.node_id
            ).execute()
        except peewee.PeeweeException as exc:
            log.warning(
                "scheduler: could not release job locks (they expire on their own): %s", exc
            )

    def fire(self, name: str) -> int | None:
        """APScheduler worker thread: take this period's lock and queue the job for its actor.

        Returns the JobRun id, or None when this period belongs to another node or has run.
        """
        spec = self.runtime.settings.schedule.get(name)
        if spec is None:
            return None
        now = self.now()
        period = period_key(spec, now)
        try:
            with write_transaction():
                if not take_lock(
                    name,
                    self.runtime.node_id,
                    period,
                    now,
                    self.runtime.settings.scheduler.lock_seconds,
                ):
                    return None
                run_id = self._queue(name, period, now)
        except peewee.PeeweeException:
            log.exception(
                "scheduler: %s could not be queued for %s; the next period tries again",
                name,
                period,
            )
            return None
        self.runtime.wake(JOBS[name].actor)
        return run_id

    def run_now(self, name: str) -> int:
        """Queue a run outside the schedule (admin API); raises UnknownJob. Caller's thread."""
        if name not in JOBS:
            raise UnknownJob(name)
        now = self.now()
        with write_transaction():
            run_id = self._queue(name, "manual " + (to_rfc3339(now) or ""), now)
        self.runtime.wake(JOBS[name].actor)
        return run_id

    def _queue(self, name: str, period: str, now: float) -> int:
        run = JobRun.create(
            name=name,
            owner=self.runtime.node_id,
            started_at=now,
            outcome="running",
            period_key=period,
        )
        self.runtime.mailbox.put(JOBS[name].actor, name, {"run_id": run.id})
        return run.id

    def jobs(self, runs: int = 5) -> list[dict[str, Any]]:
        """Every known job: its schedule, next run on this node, lock and last runs."""
        out = []
        for name in sorted(JOBS):
            spec = self.runtime.settings.schedule.get(name)
            job = self.scheduler.get_job(name)
            lock = JobLock.get_or_none(JobLock.name == name)
            recent = (
                JobRun.select().where(JobRun.name == name).order_by(JobRun.id.desc()).limit(runs)
            )
            out.append(
                {
                    "name": name,
                    "actor": JOBS[name].actor,
                    "schedule": spec.model_dump() if spec else None,
                    "scheduled": job is not None,
                    "next_run_at": job.next_run_time.isoformat().replace("+00:00", "Z")
                    if job is not None and job.next_run_time
                    else None,
                    "lock": {
                        "owner": lock.owner,
                        "period": lock.period_key,
                        "expires_at": to_rfc3339(lock.expires_at),
                    }
                    if lock and lock.owner
                    else None,
                    "last_runs": [run_view(r) for r in recent],
                }
            )
        return out
