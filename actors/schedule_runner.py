"""The schedules actor: turns each due fire of a recurring message into one message via ingest.

Each fire is one mailbox entry (dedupe key: schedule, revision, fire time), so every node
agrees on it and one lease holder sends it; the message's idempotency key makes a re-run a replay.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from apscheduler.triggers.base import BaseTrigger

from messagepusher.actors.ingest import Draft, IngestError
from messagepusher.messages import recurrence
from messagepusher.supervisor.actor import SerialActor
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.mailbox import Entry, Mailbox
from messagepusher.supervisor.models import Message, Schedule, ScheduleFire
from messagepusher.supervisor.timefmt import to_rfc3339

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

log = logging.getLogger(__name__)

RECIPIENT = "schedules"


def trigger_of(schedule: Schedule) -> BaseTrigger:
    """The schedule's trigger; raises recurrence.RecurrenceError for a stored value gone bad."""
    return recurrence.trigger_for(
        schedule.cron, schedule.every_seconds, recurrence.zone(schedule.timezone)
    )


def fire_key(schedule_id: int, fire_at: float) -> str:
    """The message idempotency key of one fire: the same on every node and every re-run."""
    return f"schedule:{schedule_id}:{fire_at:.0f}"


def queue_next(mailbox: Mailbox, schedule: Schedule, at: float | None) -> None:
    """Queue the fire at `at` (nothing when None). Runs in the caller's write transaction.

    The dedupe key holds the revision: after an edit the new revision's fire is queued beside
    the stale one, which is dropped when it comes due.
    """
    if at is None or not schedule.enabled:
        return
    mailbox.put(
        RECIPIENT,
        "fire",
        {"schedule_id": schedule.id, "revision": schedule.revision, "fire_at": at},
        available_at=at,
        dedupe_key=f"schedule:{schedule.id}:r{schedule.revision}:{at:.0f}",
        user_id=schedule.user_id,
    )


def draft_for(schedule: Schedule, key: str) -> Draft:
    """The message of one fire, as POST /api/v1/messages would have made it (already validated)."""
    m: dict[str, Any] = schedule.message
    return Draft(
        user_id=schedule.user_id,
        title=m.get("title", ""),
        body=m.get("body", ""),
        format=m.get("format", "text"),
        url=m.get("url"),
        priority=m.get("priority", 3),
        channels=m.get("channels"),
        ai=m.get("ai"),
        callback_url=m.get("callback_url"),
        idempotency_key=key,
        request_hash=key,
    )


def submit(runtime: Runtime, schedule: Schedule, key: str) -> tuple[str, int | None, Any]:
    """Hand one fire's message to ingest under idempotency key `key`: ("sent", message id, None) or ("failed", None, error).

    Runs in the caller's thread (the schedules actor, or an HTTP worker for run-now).
    Raises IngestUnavailable when ingest is down: nothing was stored, the caller retries.
    """
    try:
        accepted = runtime.ingest.accept(draft_for(schedule, key))
    except IngestError as exc:
        return "failed", None, {"error": exc.message, "code": exc.code}
    return "sent", accepted.id, None


def sent_before(schedule: Schedule, fire_at: float) -> int | None:
    """The message an earlier run of this fire already stored, if one did."""
    row = (
        Message.select(Message.id)
        .where(
            (Message.user == schedule.user_id)
            & (Message.idempotency_key == fire_key(schedule.id, fire_at))
        )
        .first()
    )
    return row.id if row else None


def record(
    schedule: Schedule,
    fire_at: float,
    outcome: str,
    message_id: int | None,
    detail: dict[str, Any] | None,
    now: float,
) -> None:
    """Store what became of a fire (caller's transaction); a second record of it is ignored."""
    ScheduleFire.insert(
        schedule=schedule.id,
        fire_at=fire_at,
        outcome=outcome,
        message_id=message_id,
        detail=detail,
        at=now,
    ).on_conflict_ignore().execute()


class ScheduleRunnerActor(SerialActor):
    """Runs due fires. Every method runs in the schedules actor's thread.

    A fire that raises (ingest down, database busy) is nacked and retried with back-off;
    the retry still respects the schedule's misfire grace.
    """

    name = RECIPIENT

    def execute(self, entry: Entry) -> None:
        """Actor thread: run one fire at the runtime clock's time; raising nacks the entry."""
        run_fire(self.runtime, entry.payload, self.clock.now())


def run_fire(runtime: Runtime, payload: dict[str, Any], now: float) -> str | None:
    """Send or miss one queued fire and queue the next; returns the outcome, None when stale."""
    schedule = Schedule.get_or_none(Schedule.id == payload["schedule_id"])
    if schedule is None or not schedule.enabled or schedule.revision != payload["revision"]:
        return None
    fire_at = float(payload["fire_at"])
    try:
        trigger = trigger_of(schedule)
    except recurrence.RecurrenceError as exc:
        log.error("schedule %d cannot run: %s", schedule.id, exc)
        with write_transaction():
            record(schedule, fire_at, "failed", None, {"error": str(exc)}, now)
        return "failed"
    decision = recurrence.decide(trigger, fire_at, now, schedule.misfire_grace_seconds)
    message_id, detail = None, None
    if decision.send:
        outcome, message_id, detail = submit(runtime, schedule, fire_key(schedule.id, fire_at))
    elif (earlier := sent_before(schedule, fire_at)) is not None:
        # A run that crashed after ingest's commit: the message exists, so the fire was sent.
        outcome, message_id = "sent", earlier
    else:
        outcome = "missed"
        detail = {
            "late_seconds": round(now - fire_at, 3),
            "misfire_grace_seconds": schedule.misfire_grace_seconds,
        }
    if decision.skipped_to:
        detail = {**(detail or {}), "missed_until": to_rfc3339(decision.resume_at)}
    with write_transaction():
        record(schedule, fire_at, outcome, message_id, detail, now)
        Schedule.update(last_fire_at=fire_at).where(
            (Schedule.id == schedule.id)
            & ((Schedule.last_fire_at.is_null()) | (Schedule.last_fire_at < fire_at))
        ).execute()
        queue_next(runtime.mailbox, schedule, decision.resume_at)
    runtime.wake("dispatcher")
    if outcome == "missed":
        log.warning(
            "schedule %d: the fire at %s was missed (%.0fs late, grace %ds)",
            schedule.id,
            to_rfc3339(fire_at),
            now - fire_at,
            schedule.misfire_grace_seconds,
        )
    return outcome
