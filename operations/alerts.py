"""Alert rules and their life cycle: which conditions hold, whom to tell, when it is resolved.

Pure functions over an Observation and the open alerts with `now` passed in; the monitor does the I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from messagepusher.supervisor.config import AlertSettings
from messagepusher.supervisor.timefmt import to_rfc3339

# A failure rate over fewer deliveries than this says nothing.
MIN_DELIVERIES_FOR_RATE = 10


@dataclass(frozen=True)
class Observation:
    """What the monitor saw in one round; counts are since the previous round."""

    node: str
    interval: float
    actors: dict[str, str]  # name -> state: running, restarting, given_up, not responding ...
    restarts: dict[str, int]
    backlog_ages: dict[str, float]  # recipient -> age of its oldest due entry
    dead_letters_new: int
    deliveries_sent: int
    deliveries_failed: int
    disk_free_mb: float
    rss_mb: float
    integrity: str | None  # the last integrity check's findings when they were not "ok"


@dataclass(frozen=True)
class Condition:
    """A rule that holds now. `key` says where; one open alert per (rule, key)."""

    rule: str
    key: str
    severity: str
    message: str


@dataclass(frozen=True)
class OpenAlert:
    id: int
    rule: str
    key: str
    notified_at: float | None


@dataclass(frozen=True)
class Action:
    """open a new alert, update a firing one, or resolve one; `notify` says whether to tell admins."""

    kind: str
    alert_id: int | None
    condition: Condition | None
    notify: bool


def local_key(node: str, what: str) -> str:
    """The key of a condition only this process can judge (its actors, its memory)."""
    return f"{node}/{what}"


def owned(key: str, node: str) -> bool:
    """Whether this node judges (and so may resolve) an alert: its own, or a shared one."""
    return "/" not in key or key.startswith(node + "/")


def evaluate(obs: Observation, limits: AlertSettings) -> list[Condition]:
    """Every condition that holds in `obs` under the configured thresholds."""
    node = obs.node
    out: list[Condition] = []
    for name, state in sorted(obs.actors.items()):
        if state != "running":
            out.append(
                Condition(
                    "actor_down", local_key(node, name), "critical", f"actor {name} is {state}"
                )
            )
    for name, count in sorted(obs.restarts.items()):
        if count >= limits.restarts_per_interval:
            out.append(
                Condition(
                    "actor_restarting",
                    local_key(node, name),
                    "warning",
                    f"actor {name} restarted {count} times in {obs.interval:.0f}s "
                    f"(limit {limits.restarts_per_interval})",
                )
            )
    for recipient, age in sorted(obs.backlog_ages.items()):
        if age > limits.backlog_age_seconds:
            out.append(
                Condition(
                    "backlog",
                    recipient,
                    "warning",
                    f"{recipient} has work waiting for {age:.1f}s (limit {limits.backlog_age_seconds:g}s)",
                )
            )
    if obs.dead_letters_new >= limits.dead_letters_per_interval:
        out.append(
            Condition(
                "dead_letters",
                "mailbox",
                "warning",
                f"{obs.dead_letters_new} entries were dead-lettered in {obs.interval:.0f}s "
                f"(limit {limits.dead_letters_per_interval})",
            )
        )
    total = obs.deliveries_sent + obs.deliveries_failed
    if total >= MIN_DELIVERIES_FOR_RATE and obs.deliveries_failed / total >= limits.failure_rate:
        out.append(
            Condition(
                "failure_rate",
                local_key(node, "deliveries"),
                "warning",
                f"{obs.deliveries_failed} of {total} delivery attempts failed in {obs.interval:.0f}s "
                f"(limit {limits.failure_rate:.0%})",
            )
        )
    if obs.disk_free_mb < limits.disk_free_min_mb:
        out.append(
            Condition(
                "disk_low",
                local_key(node, "disk"),
                "critical",
                f"{obs.disk_free_mb:.0f} MB free under the data dir (limit {limits.disk_free_min_mb:g} MB)",
            )
        )
    if obs.rss_mb > limits.memory_rss_max_mb:
        out.append(
            Condition(
                "memory_high",
                local_key(node, "memory"),
                "warning",
                f"resident memory {obs.rss_mb:.0f} MB (limit {limits.memory_rss_max_mb:g} MB)",
            )
        )
    if obs.integrity:
        out.append(
            Condition(
                "integrity",
                "database",
                "critical",
                f"database integrity check failed: {obs.integrity}",
            )
        )
    return out


def plan(
    conditions: list[Condition],
    open_alerts: list[OpenAlert],
    last_notified: dict[tuple[str, str], float],
    cooldown: float,
    now: float,
) -> list[Action]:
    """What to do with the alerts this node owns, given the conditions that hold now.

    A new condition opens an alert; admins hear of it unless the same (rule, key) was
    notified less than `cooldown` ago, in which case they hear once the cooldown has passed
    if it still holds. An alert whose condition is gone is resolved, with a notice only if
    its firing was notified. Repeated observations only update the open alert.
    """
    by_ident = {(a.rule, a.key): a for a in open_alerts}
    seen: set[tuple[str, str]] = set()
    actions: list[Action] = []
    for condition in conditions:
        ident = (condition.rule, condition.key)
        if ident in seen:
            continue
        seen.add(ident)
        quiet = now - last_notified.get(ident, -math.inf) >= cooldown
        alert = by_ident.get(ident)
        if alert is None:
            actions.append(Action("open", None, condition, quiet))
        else:
            actions.append(
                Action("update", alert.id, condition, alert.notified_at is None and quiet)
            )
    for ident, alert in by_ident.items():
        if ident not in seen:
            actions.append(Action("resolve", alert.id, None, alert.notified_at is not None))
    return actions


def firing_notice(condition: Condition, node: str, alert_id: int) -> tuple[str, str]:
    """(title, body) of the notification that alert `alert_id` fires."""
    title = f"[MessagePusher alert] {condition.rule}: {condition.message}"
    body = (
        f"{condition.severity.upper()} {condition.rule} on {condition.key}\n{condition.message}\n"
        f"seen by {node}; acknowledge with POST /api/v1/admin/alerts/{alert_id}/ack"
    )
    return title, body


def resolved_notice(
    rule: str, key: str, message: str, first_at: float, now: float
) -> tuple[str, str]:
    """(title, body) of the notification that an alert is resolved."""
    title = f"[MessagePusher resolved] {rule}: {key}"
    body = (
        f"resolved: {rule} on {key}\nwas: {message}\n"
        f"from {to_rfc3339(first_at)} to {to_rfc3339(now)} ({now - first_at:.0f}s)"
    )
    return title, body
