"""Daily statistics: per user and channel (sent, failed, latency percentiles) and for the system.

A day's figures cover the messages accepted that UTC day. The janitor stores them as Report
rows after midnight; the stats endpoints show those beside the same figures for today so far.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee

from messagepusher.messages import lifecycle
from messagepusher.supervisor.clock import Clock, SystemClock
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import (
    Delivery,
    JobRun,
    MailboxEntry,
    Message,
    Report,
    SupervisorEvent,
)


@dataclass(frozen=True)
class Outcome:
    """One delivery of a message accepted in the period, as the figures see it."""

    user_id: int
    channel: str
    channel_type: str
    status: str
    latency: float | None  # seconds from acceptance to the send, for sent deliveries


# --- pure --------------------------------------------------------------------------------------


def day_of(ts: float) -> str:
    """The UTC date of a time, as 2026-11-28."""
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def previous_day(now: float) -> str:
    """The UTC day before `now`'s: what the daily_report job reports."""
    return day_of(now - 86400)


def day_bounds(day: str) -> tuple[float, float]:
    """[start, end) of a UTC day in epoch seconds."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of sorted `values`; None when empty."""
    if not values:
        return None
    rank = max(1, math.ceil(q / 100 * len(values)))
    return round(values[rank - 1], 3)


def figures(outcomes: list[Outcome]) -> dict[str, Any]:
    """Sent, failed, pending and latency percentiles of some deliveries."""
    latencies = sorted(o.latency for o in outcomes if o.latency is not None)
    return {
        "sent": sum(1 for o in outcomes if o.status == "sent"),
        "failed": sum(1 for o in outcomes if o.status in lifecycle.DELIVERY_FAILED),
        "pending": sum(1 for o in outcomes if o.status not in lifecycle.DELIVERY_FINAL),
        "latency_p50_seconds": percentile(latencies, 50),
        "latency_p95_seconds": percentile(latencies, 95),
    }


def summarize(outcomes: Iterable[Outcome]) -> dict[int, dict[str, Any]]:
    """Per user: figures per channel and in total."""
    by_user: dict[int, dict[str, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
    for outcome in outcomes:
        by_user[outcome.user_id][outcome.channel].append(outcome)
    out = {}
    for user_id, channels in by_user.items():
        everything = [o for rows in channels.values() for o in rows]
        out[user_id] = {
            "channels": {
                name: {"type": rows[0].channel_type, **figures(rows)}
                for name, rows in sorted(channels.items())
            },
            "totals": figures(everything),
        }
    return out


# --- reading the database (caller's thread; database errors go to the caller) -----------------


def outcomes(start: float, end: float, user_id: int | None = None) -> list[Outcome]:
    """The deliveries of the messages accepted in [start, end), of one user or everyone."""
    query = (
        Delivery.select(
            Message.user,
            Delivery.channel_name,
            Delivery.channel_type,
            Delivery.status,
            Delivery.sent_at,
            Message.created_at,
        )
        .join(Message)
        .where((Message.created_at >= start) & (Message.created_at < end))
    )
    if user_id is not None:
        query = query.where(Message.user == user_id)
    return [
        Outcome(
            user,
            name,
            kind,
            status,
            max(0.0, sent_at - created) if status == "sent" and sent_at else None,
        )
        for user, name, kind, status, sent_at, created in query.tuples().iterator()
    ]


def messages_per_user(start: float, end: float, user_id: int | None = None) -> dict[int, int]:
    """Messages accepted in [start, end) per user."""
    query = (
        Message.select(Message.user, peewee.fn.COUNT(Message.id))
        .where((Message.created_at >= start) & (Message.created_at < end))
        .group_by(Message.user)
    )
    if user_id is not None:
        query = query.where(Message.user == user_id)
    return dict(query.tuples())


def user_figures(start: float, end: float, user_id: int) -> dict[str, Any]:
    """One user's messages and delivery figures per channel and in total."""
    summary = summarize(outcomes(start, end, user_id)).get(
        user_id, {"channels": {}, "totals": figures([])}
    )
    return {"messages": messages_per_user(start, end, user_id).get(user_id, 0), **summary}


def system_figures(start: float, end: float) -> dict[str, Any]:
    """Throughput, delivery figures, restarts, dead letters and failed jobs of [start, end)."""
    accepted = messages_per_user(start, end)
    total = sum(accepted.values())

    def count(model: type[peewee.Model], where: peewee.Expression, at: peewee.Field) -> int:
        return model.select().where(where & (at >= start) & (at < end)).count()

    return {
        "messages_accepted": total,
        "throughput_per_second": round(total / max(1.0, end - start), 4),
        "users_active": len(accepted),
        "deliveries": figures(outcomes(start, end)),
        "restarts": count(SupervisorEvent, SupervisorEvent.event == "restart", SupervisorEvent.at),
        "crashes": count(
            SupervisorEvent, SupervisorEvent.event.in_(("crash", "hung")), SupervisorEvent.at
        ),
        "dead_letters": count(MailboxEntry, MailboxEntry.state == "dead", MailboxEntry.updated_at),
        "job_failures": count(JobRun, JobRun.outcome == "failed", JobRun.started_at),
    }


def write_daily_reports(day: str, clock: Clock = SystemClock()) -> dict[str, Any]:  # noqa: B008 - stateless
    """Janitor worker thread: (re)write `day`'s reports, one per active user and one for the system.

    `clock` stamps the rows (the runtime's clock from the janitor). Database errors raise.
    """
    start, end = day_bounds(day)
    per_user = summarize(outcomes(start, end))
    counts = messages_per_user(start, end)
    system = system_figures(start, end)
    now = clock.now()
    rows = [
        {
            "day": day,
            "scope": "user",
            "user_id": uid,
            "created_at": now,
            "data": {"messages": counts.get(uid, 0), **summary},
        }
        for uid, summary in per_user.items()
    ]
    rows.append({"day": day, "scope": "system", "user_id": None, "created_at": now, "data": system})
    with write_transaction():
        Report.delete().where(Report.day == day).execute()
        Report.insert_many(rows).execute()
    return {"day": day, "users": len(per_user), "messages_accepted": system["messages_accepted"]}


def stored(scope: str, user_id: int | None, days: int) -> list[dict[str, Any]]:
    """The newest `days` reports of a scope (a user's, or the system's), newest first."""
    query = Report.select().where(Report.scope == scope).order_by(Report.day.desc()).limit(days)
    query = query.where(Report.user_id == user_id) if user_id is not None else query
    return [{"day": r.day, **r.data} for r in query]


def today_bounds(now: float) -> tuple[float, float]:
    """From the start of today (UTC) to `now`."""
    return day_bounds(day_of(now))[0], now
