"""Recurring-message time math: validating cron and time zones, next fire times, misfire decisions.

Pure functions of their inputs; APScheduler's CronTrigger does the cron arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEXT_RUNS = 5


class RecurrenceError(ValueError):
    """A cron expression or time zone that cannot be used; names the field and the value."""

    def __init__(self, field: str, message: str, value: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.value = field, message, value


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; raises RecurrenceError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RecurrenceError(
            "timezone", "is not an IANA time zone such as Europe/Berlin or Asia/Shanghai", name
        ) from None


def parse_cron(expr: str, tz: ZoneInfo) -> CronTrigger:
    """A five-field crontab (minute hour day month day_of_week) as a CronTrigger in `tz`.

    Raises RecurrenceError naming the first bad field. Numbers in day_of_week are refused:
    cron counts them from Sunday and APScheduler from Monday, so names (mon-fri, sun) say
    what the user means.
    """
    values = expr.split()
    if len(values) != len(CRON_FIELDS):
        raise RecurrenceError(
            "cron",
            f"needs 5 fields ({' '.join(CRON_FIELDS)}), got {len(values)}; e.g. '0 9 * * mon-fri'",
            expr,
        )
    for name, value in zip(CRON_FIELDS, values, strict=True):
        if name == "day_of_week" and any(c.isdigit() for c in value.split("/")[0]):
            raise RecurrenceError(
                "cron.day_of_week",
                "use day names such as mon-fri or sun, not numbers (cron and APScheduler "
                "number the days differently)",
                value,
            )
        try:
            CronTrigger(**{name: value}, timezone=tz)
        except ValueError as exc:
            raise RecurrenceError(f"cron.{name}", str(exc), value) from None
    return CronTrigger.from_crontab(expr, timezone=tz)


def trigger_for(cron: str | None, every_seconds: int | None, tz: ZoneInfo) -> BaseTrigger:
    """The trigger of a schedule. Intervals count from the epoch, so every node agrees on them."""
    if cron:
        return parse_cron(cron, tz)
    if not every_seconds:
        raise RecurrenceError("every_seconds", "give cron or every_seconds", "")
    return IntervalTrigger(seconds=every_seconds, start_date=EPOCH, timezone=UTC)


def next_fire(trigger: BaseTrigger, after: float) -> float | None:
    """The first fire time strictly after `after` (epoch seconds), or None when there is none."""
    start = datetime.fromtimestamp(after, UTC) + timedelta(microseconds=1)
    fire = trigger.get_next_fire_time(None, start)
    return fire.timestamp() if fire is not None else None


def next_runs(trigger: BaseTrigger, after: float, count: int = NEXT_RUNS) -> list[float]:
    """The next `count` fire times strictly after `after`."""
    out: list[float] = []
    at: float | None = after
    while len(out) < count:
        at = next_fire(trigger, at)
        if at is None:
            break
        out.append(at)
    return out


def rfc3339_in(ts: float, tz: ZoneInfo) -> str:
    """`ts` as RFC 3339 with the offset of `tz` at that instant (how the schedule's owner reads it)."""
    return datetime.fromtimestamp(ts, tz).isoformat()


@dataclass(frozen=True)
class FireDecision:
    """What to do with one due fire time, and where the schedule resumes."""

    send: bool  # False: the fire is recorded as missed
    resume_at: float | None  # the next fire time to queue
    skipped_to: bool  # True when fires between this one and resume_at were missed too


def decide(trigger: BaseTrigger, fire_at: float, now: float, grace: float) -> FireDecision:
    """Send a fire at most `grace` seconds late; beyond that it is missed.

    The schedule resumes at the next fire after `fire_at`, or, when that one is past the
    grace window too, at the first fire still within it: a long outage is one missed record,
    not one per lost fire.
    """
    send = now - fire_at <= grace
    resume = next_fire(trigger, fire_at)
    skipped = False
    if resume is not None and now - resume > grace:
        resume = next_fire(trigger, now - grace - 1e-6)
        skipped = True
    return FireDecision(send, resume, skipped)
