"""/api/v1/admin/stats/charts: the admin dashboard's series, answered from the database.

Messages per hour by final status, delivery success per channel type, queue depth over the last hour.
"""

from __future__ import annotations

from typing import Any

import falcon

from messagepusher.http.routes import Op, Route
from messagepusher.messages.lifecycle import MESSAGE_FINAL
from messagepusher.supervisor.db import select_rows
from messagepusher.supervisor.timefmt import to_rfc3339

HOURS = 24
DEPTH_POINTS = 13  # every 5 minutes over the last hour, both ends included
DEPTH_STEP = 300
MAILBOX_FINISHED = ("done", "dead", "cancelled")
DELIVERY_OUTCOMES = ("sent", "failed", "dead")


def hour_starts(now: float, hours: int = HOURS) -> list[float]:
    """The starts of the last `hours` whole hours, oldest first; the last is the current hour."""
    current = now - now % 3600
    return [current - 3600 * (hours - 1 - i) for i in range(hours)]


def depth_instants(now: float) -> list[float]:
    """The instants at which queue depth is counted: every DEPTH_STEP s back one hour, oldest first."""
    return [now - DEPTH_STEP * (DEPTH_POINTS - 1 - i) for i in range(DEPTH_POINTS)]


def _in(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v + "'" for v in values)


def messages_per_hour(now: float) -> dict[str, Any]:
    """Messages created in each of the last 24 hours, counted by the final status they reached.

    One range scan of the message table's created_at index; a message still in flight is not counted.
    """
    starts = hour_starts(now)
    bounds = [*starts, starts[-1] + 3600]
    columns = ", ".join(
        "SUM(CASE WHEN created_at >= ? AND created_at < ? THEN 1 ELSE 0 END)" for _ in starts
    )
    args: list[float] = []
    for i in range(len(starts)):
        args += [bounds[i], bounds[i + 1]]
    rows = select_rows(
        f"SELECT status, {columns} FROM message "
        f"WHERE created_at >= ? AND created_at < ? AND status IN ({_in(MESSAGE_FINAL)}) "
        "GROUP BY status",
        (*args, bounds[0], bounds[-1]),
    )
    by_status = {status: [0] * len(starts) for status in MESSAGE_FINAL}
    for row in rows:
        by_status[row[0]] = [int(n or 0) for n in row[1:]]
    return {"hours": [to_rfc3339(s) for s in starts], "by_status": by_status}


def delivery_success(now: float) -> list[dict[str, Any]]:
    """Per channel type, the deliveries of the last 24 hours' messages that ended sent or not."""
    rows = select_rows(
        "SELECT d.channel_type, d.status, COUNT(*) FROM delivery d "
        "JOIN message m ON m.id = d.message_id "
        f"WHERE m.created_at >= ? AND d.status IN ({_in(DELIVERY_OUTCOMES)}) "
        "GROUP BY d.channel_type, d.status",
        (now - HOURS * 3600,),
    )
    types: dict[str, dict[str, int]] = {}
    for channel_type, status, count in rows:
        types.setdefault(channel_type, {"sent": 0, "failed": 0})
        types[channel_type]["sent" if status == "sent" else "failed"] += int(count)
    return [
        {
            "type": name,
            "sent": n["sent"],
            "failed": n["failed"],
            "rate": round(n["sent"] / (n["sent"] + n["failed"]), 4),
        }
        for name, n in sorted(types.items())
    ]


def queue_depth(now: float) -> dict[str, Any]:
    """Mailbox entries waiting or in work at each instant of the last hour, per mailbox.

    An entry counts from its creation until it finished (done, dead, cancelled: its last update);
    rows the janitor already purged are not seen, which only lowers older points.
    """
    instants = depth_instants(now)
    columns = ", ".join(
        "SUM(CASE WHEN created_at <= ? AND "
        f"(state NOT IN ({_in(MAILBOX_FINISHED)}) OR updated_at > ?) THEN 1 ELSE 0 END)"
        for _ in instants
    )
    args: list[float] = []
    for at in instants:
        args += [at, at]
    rows = select_rows(
        f"SELECT recipient, {columns} FROM mailbox "
        f"WHERE state NOT IN ({_in(MAILBOX_FINISHED)}) OR updated_at > ? GROUP BY recipient",
        (*args, instants[0]),
    )
    by_mailbox = {row[0]: [int(n or 0) for n in row[1:]] for row in rows}
    total = [sum(series[i] for series in by_mailbox.values()) for i in range(len(instants))]
    return {
        "at": [to_rfc3339(at) for at in instants],
        "total": total,
        "by_mailbox": dict(sorted(by_mailbox.items())),
    }


class AdminCharts:
    """The dashboard's three series at the runtime clock's now. HTTP worker thread; raises only
    what the database raises (a 500, logged)."""

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        now = self.runtime.clock.now()
        resp.media = {
            "generated_at": to_rfc3339(now),
            "messages_per_hour": messages_per_hour(now),
            "delivery_success": delivery_success(now),
            "queue_depth": queue_depth(now),
        }


ROUTES = [
    Route(
        "/api/v1/admin/stats/charts",
        "stats:AdminCharts",
        {
            "GET": Op(
                "admin",
                "Dashboard series: messages per hour by final status (24 h), delivery success "
                "rate per channel type (24 h), queue depth per mailbox every 5 min (1 h)",
            ),
        },
        tag="admin",
    ),
]
