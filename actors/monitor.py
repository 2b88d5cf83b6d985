"""The monitor: liveness (its one owner), queue depths, resources and alert rules, on timers.

Feeds /metrics, /readyz (actors that stopped answering), the alerts and the systemd watchdog.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import peewee
import psutil
import pykka

from messagepusher.actors.ingest import Draft, IngestError, IngestUnavailable
from messagepusher.operations import alerts
from messagepusher.supervisor import sd_notify
from messagepusher.supervisor.actor import PING, TICK, SerialActor
from messagepusher.supervisor.config import DEADLINE_KEY, Settings, liveness_deadline
from messagepusher.supervisor.db import database, write_transaction
from messagepusher.supervisor.health import readiness
from messagepusher.supervisor.metrics import Metrics
from messagepusher.supervisor.models import Alert, JobRun, User
from messagepusher.supervisor.restart_policy import is_hung
from messagepusher.supervisor.supervisor import ChildAnswered, ReportHung

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

log = logging.getLogger(__name__)

QUEUE_STATES = ("ready", "leased", "failed", "dead")
MB = 1024 * 1024
# An alert notification waits this long for the ingest commit; a slower one is retried next round.
NOTIFY_TIMEOUT_SECONDS = 2.0
# PostgreSQL advisory lock class of "opening an alert" (one lock per rule and key); the
# single-key lock 8080001 of the migrations lives in another key space.
ALERT_LOCK_CLASS = 8080002


# --- gauges (caller's thread: the monitor's, or an HTTP worker scraping /metrics) ---------------------


def refresh_queue_gauges(runtime: Runtime) -> list[dict[str, Any]]:
    """Set the mailbox gauges from one depth query and return the depths.

    Every child and every state gets a series, 0 when empty, so a queue that drains shows 0.
    """
    depths = runtime.mailbox.depths()
    counts = {(d["recipient"], d["state"]): d["count"] for d in depths}
    oldest = oldest_due(depths)
    recipients = {r for r, _ in counts} | {c.name for c in runtime.settings.supervisor.children}
    for recipient in recipients:
        for state in QUEUE_STATES:
            runtime.metrics.queue_depth.labels(recipient, state).set(
                counts.get((recipient, state), 0)
            )
        runtime.metrics.oldest_ready.labels(recipient).set(oldest.get(recipient, 0.0))
    return depths


def oldest_due(depths: list[dict[str, Any]]) -> dict[str, float]:
    """Per recipient, the age of its oldest due entry (ready or waiting for a retry)."""
    oldest: dict[str, float] = defaultdict(float)
    for d in depths:
        oldest[d["recipient"]] = max(oldest[d["recipient"]], d["oldest_ready_age_seconds"])
    return dict(oldest)


def refresh_process_gauges(runtime: Runtime, process: psutil.Process) -> dict[str, float]:
    """CPU, memory, threads, open files of this process and free disk under the data dir."""
    with process.oneshot():
        resources = {
            "cpu_percent": process.cpu_percent(None),
            "rss_bytes": float(process.memory_info().rss),
            "threads": float(process.num_threads()),
            "open_files": float(process.num_fds()),
        }
    resources["disk_free_bytes"] = float(psutil.disk_usage(str(runtime.data_dir)).free)
    m = runtime.metrics
    m.process_cpu.set(resources["cpu_percent"])
    m.process_rss.set(resources["rss_bytes"])
    m.process_threads.set(resources["threads"])
    m.process_open_files.set(resources["open_files"])
    m.disk_free.set(resources["disk_free_bytes"])
    return resources


def delivery_counts(metrics: Metrics) -> tuple[int, int]:
    """(sent, failed attempts) counted by the channel pool since this process started."""
    sent = failed = 0.0
    for metric in metrics.deliveries.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                if sample.labels.get("outcome") == "sent":
                    sent += sample.value
                else:
                    failed += sample.value
    return int(sent), int(failed)


def last_integrity_problem() -> str | None:
    """The findings of the newest finished db_maintenance run when they were not "ok"."""
    run = (
        JobRun.select(JobRun.detail)
        .where((JobRun.name == "db_maintenance") & (JobRun.outcome == "ok"))
        .order_by(JobRun.id.desc())
        .first()
    )
    integrity = (run.detail or {}).get("integrity") if run else None
    return None if integrity in (None, "ok") else str(integrity)


def lock_alert_ident(rule: str, key: str) -> None:
    """Until the caller's transaction ends, be the only node opening alert (rule, key).

    Two nodes that both find no firing alert would otherwise both insert one (PostgreSQL's
    READ COMMITTED lets each miss the other's uncommitted row) and both notify. Once the
    first commits, the second's lookup sees its alert. SQLite needs nothing: the write
    transaction already holds the database's only write lock.
    """
    ident = zlib.crc32(f"{rule}\0{key}".encode()) - 2**31  # a stable int4 on every node
    database.dialect.lock_in_transaction(ALERT_LOCK_CLASS, ident)


def notified_since(condition: alerts.Condition, since: float) -> bool:
    """Whether any alert of the condition's rule and key was notified after `since`."""
    return (
        Alert.select()
        .where(
            (Alert.rule == condition.rule)
            & (Alert.key == condition.key)
            & (Alert.notified_at > since)
        )
        .exists()
    )


@dataclass
class _Probe:
    ref: pykka.ActorRef
    incarnation: int
    future: pykka.Future
    sent: float
    reported: bool = False


def _answer(future: pykka.Future) -> str:
    """How a ping stands: "pending", "pong", or "stopped" (the supervisor deals with a stopped child)."""
    try:
        future.get(timeout=0)
    except pykka.Timeout:
        return "pending"
    except pykka.ActorDeadError:
        return "stopped"
    return "pong"


def liveness_period(settings: Settings) -> float:
    """Seconds between liveness checks: a quarter of the deadline, at most `monitor.interval`.

    Four checks per deadline find a hang within 1.25 deadlines and see the "not ready" half.
    """
    return min(settings.monitor.interval, liveness_deadline(settings)[0] / 4)


def hung_detail(deadline: float, key: str) -> str:
    """The reason recorded for a hung child; names the deprecated key when that set the deadline."""
    detail = f"no answer to the monitor's ping within {deadline:g}s"
    if key != DEADLINE_KEY:
        detail += f" (liveness ping deadline from {key}, a deprecated name: use {DEADLINE_KEY})"
    return detail


class CheckLiveness:
    """Tell (from the monitor's own timer): ping the children, judge the outstanding pings."""


CHECK_LIVENESS = CheckLiveness()


class MonitorActor(SerialActor):
    """Liveness every `liveness_period`, a round every `monitor.interval` (or half the systemd
    watchdog period, if shorter), both on timers of the process ticker.

    Every method runs in the monitor's own thread. A check or round that raises (a busy
    database) is logged and the next one runs as usual. The monitor is the one owner of
    liveness: it judges hangs (`monitor.ping_deadline_seconds`) and the supervisor restarts
    what it reports. Nobody pings the monitor; a monitor stuck in one message stops feeding
    the systemd watchdog, and /readyz fails once its last liveness check is older than the
    deadline (supervisor/health.py).
    """

    name = "monitor"

    def setup(self) -> None:
        """Actor thread: start both timers, first at once. Raising (psutil) stops the actor."""
        self.probes: dict[str, _Probe] = {}
        self.answered: dict[str, int] = {}
        self.process = psutil.Process()
        self.process.cpu_percent(None)
        self.last_round = self.clock.monotonic()
        self.last_restarts: dict[str, int] | None = None
        self.last_dead: int | None = None
        self.last_deliveries = delivery_counts(self.runtime.metrics)
        self.last_status = ""
        self.timers.after("liveness", 0.0, CHECK_LIVENESS)
        self.timers.after("round", 0.0, TICK)

    def teardown(self, crashed: bool) -> None:
        """Actor thread, as the monitor stops: forget its judgement, since nobody judges meanwhile."""
        self.runtime.unresponsive = {}
        self.runtime.liveness_checked_at = None

    def period(self) -> float:
        """Actor thread: seconds to the next round; under systemd at most half the watchdog."""
        watchdog = sd_notify.watchdog_interval()
        interval = self.settings.monitor.interval
        return min(interval, watchdog) if watchdog else interval

    def on_tick(self) -> None:
        """Actor thread, on the round timer: one round, then the next timer. Never raises."""
        try:
            self.round()
        except Exception:  # noqa: BLE001 - one bad round must not stop monitoring
            log.exception("monitor: round failed; the next one runs in %gs", self.period())
        finally:
            self.timers.after("round", self.period(), TICK)

    def handle(self, message: Any) -> Any:
        """Actor thread: CheckLiveness from its timer (never raises); others are unexpected."""
        if isinstance(message, CheckLiveness):
            try:
                self.check_liveness()
            except Exception:  # noqa: BLE001 - one bad check must not stop liveness checks
                log.exception("monitor: liveness check failed; the next one runs as usual")
            finally:
                self.timers.after("liveness", liveness_period(self.settings), CHECK_LIVENESS)
            return None
        return super().handle(message)

    def check_liveness(self) -> None:
        """Actor thread: probe every child and publish who is overdue (read by /readyz)."""
        mono = self.clock.monotonic()
        self.runtime.unresponsive = self.probe(self.runtime.supervisor_status(), mono)
        self.runtime.liveness_checked_at = mono

    # --- one round -------------------------------------------------------------------------------

    def round(self) -> None:
        """Actor thread: gauges, alert rules and the watchdog. Raising is logged by on_tick."""
        now, mono = self.clock.now(), self.clock.monotonic()
        interval, self.last_round = mono - self.last_round, mono
        statuses = self.runtime.supervisor_status()
        overdue = dict(self.runtime.unresponsive)
        depths = refresh_queue_gauges(self.runtime)
        resources = refresh_process_gauges(self.runtime, self.process)
        actors = {}
        for name, info in statuses.items():
            state = info["state"] if info["alive"] or info["state"] != "running" else "not alive"
            if name in overdue:
                state = f"not answering pings for {overdue[name]:.1f}s"
            actors[name] = state
            self.runtime.metrics.actor_up.labels(name).set(1 if state == "running" else 0)
        restarts = {name: info["restarts"] for name, info in statuses.items()}
        previous = self.last_restarts if self.last_restarts is not None else restarts
        dead = sum(d["count"] for d in depths if d["state"] == "dead")
        sent, failed = delivery_counts(self.runtime.metrics)
        observation = alerts.Observation(
            node=self.runtime.node_id,
            interval=interval,
            actors=actors,
            restarts={n: max(0, c - previous.get(n, c)) for n, c in restarts.items()},
            backlog_ages=oldest_due(depths),
            dead_letters_new=max(0, dead - self.last_dead) if self.last_dead is not None else 0,
            deliveries_sent=sent - self.last_deliveries[0],
            deliveries_failed=failed - self.last_deliveries[1],
            disk_free_mb=resources["disk_free_bytes"] / MB,
            rss_mb=resources["rss_bytes"] / MB,
            integrity=last_integrity_problem(),
        )
        self.last_restarts, self.last_dead, self.last_deliveries = restarts, dead, (sent, failed)
        self.settle(alerts.evaluate(observation, self.settings.monitor.alerts), now)
        self.watchdog()

    def probe(self, statuses: dict[str, dict[str, Any]], mono: float) -> dict[str, float]:
        """Actor thread: ping every other running child; report one silent past the deadline as hung.

        Returns {name: seconds} of children whose ping is outstanding and who made no progress
        for more than half the deadline (they count as not ready). A report names the very
        incarnation we pinged, so the supervisor ignores it once that one is replaced. The first
        answer of each incarnation is told to the supervisor (restart back-off starts afresh).
        """
        deadline, key = liveness_deadline(self.settings)
        overdue: dict[str, float] = {}
        for name, info in statuses.items():
            ref = self.runtime.ref(name)
            probe = self.probes.get(name)
            if name == self.name or ref is None or info["state"] != "running":
                self.probes.pop(name, None)
                continue
            if probe is not None and probe.ref is not ref:
                probe = None
            if probe is not None:
                answer = _answer(probe.future)
                if answer == "pong" and self.answered.get(name) != probe.incarnation:
                    self.answered[name] = probe.incarnation
                    self._tell_supervisor(ChildAnswered(name, probe.incarnation))
                if answer != "pending":
                    probe = None
            if probe is None:
                try:
                    self.probes[name] = _Probe(
                        ref, info["incarnation"], ref.ask(PING, block=False), mono
                    )
                except pykka.ActorDeadError:
                    self.probes.pop(name, None)
                continue
            # A ping late behind a backlog is not a hang: count only the time the actor made no
            # progress at all (started or finished no message).
            ping_age = mono - probe.sent
            stalled = self.runtime.stalled_for(name, info["incarnation"], mono)
            age = min(ping_age, stalled)
            if age > deadline / 2:
                overdue[name] = age
            if is_hung(ping_age, stalled, deadline) and not probe.reported:
                probe.reported = True
                log.error(
                    "monitor: %s did not answer a ping within %gs; asking the supervisor to restart it",
                    name,
                    deadline,
                )
                self._tell_supervisor(
                    ReportHung(name, hung_detail(deadline, key), probe.incarnation)
                )
        return overdue

    def _tell_supervisor(self, message: Any) -> None:
        supervisor = self.runtime.supervisor_ref
        if supervisor is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                supervisor.tell(message)

    def watchdog(self) -> None:
        """Actor thread: WATCHDOG=1 only while ready; STATUS= whenever readiness changes."""
        ready, failing = readiness(self.runtime)
        status = "ready" if ready else "not ready: " + ", ".join(sorted(failing))
        if ready:
            sd_notify.notify("WATCHDOG=1")
        if status != self.last_status:
            sd_notify.notify(f"STATUS={status}")
            self.last_status = status

    # --- alerts ------------------------------------------------------------------------------------

    def settle(self, conditions: list[alerts.Condition], now: float) -> None:
        """Actor thread: open, update and resolve this node's alerts; notify admins as planned.

        A database error raises to `round`, which logs it; the next round settles again.
        """
        node = self.runtime.node_id
        rows = {
            a.id: a
            for a in Alert.select().where(Alert.state == "firing")
            if alerts.owned(a.key, node)
        }
        last_notified: dict[tuple[str, str], float] = {}
        if conditions or rows:
            query = (
                Alert.select(Alert.rule, Alert.key, peewee.fn.MAX(Alert.notified_at))
                .where(Alert.notified_at.is_null(False))
                .group_by(Alert.rule, Alert.key)
            )
            last_notified = {(rule, key): at for rule, key, at in query.tuples()}
        views = [alerts.OpenAlert(a.id, a.rule, a.key, a.notified_at) for a in rows.values()]
        cooldown = self.settings.monitor.alerts.cooldown_seconds
        for action in alerts.plan(conditions, views, last_notified, cooldown, now):
            if action.kind == "resolve":
                self._resolve(rows[action.alert_id], action.notify, now)
            else:
                self._fire(action, now)

    def _fire(self, action: alerts.Action, now: float) -> None:
        """Actor thread: open or update one alert, then notify if the plan says so and no other
        node did. A database error raises to `round`, which logs it."""
        condition = action.condition
        alert_id = action.alert_id
        notify = action.notify
        with write_transaction():
            if alert_id is None:  # another node sharing the database may have opened it meanwhile
                lock_alert_ident(condition.rule, condition.key)
                existing = Alert.get_or_none(
                    (Alert.rule == condition.rule)
                    & (Alert.key == condition.key)
                    & (Alert.state == "firing")
                )
                if existing is not None:
                    alert_id, notify = existing.id, False
                elif notify and notified_since(
                    condition, now - self.settings.monitor.alerts.cooldown_seconds
                ):
                    notify = False  # another node notified it after our round read the alerts
            if alert_id is None:
                alert_id = Alert.create(
                    rule=condition.rule,
                    key=condition.key,
                    severity=condition.severity,
                    state="firing",
                    message=condition.message,
                    first_at=now,
                    last_at=now,
                ).id
                log.warning(
                    "alert %d %s on %s: %s",
                    alert_id,
                    condition.severity,
                    condition.key,
                    condition.message,
                )
            else:
                Alert.update(
                    last_at=now,
                    count=Alert.count + 1,
                    message=condition.message,
                    severity=condition.severity,
                ).where(Alert.id == alert_id).execute()
        if notify and self._claim_notice(alert_id, now):
            title, body = alerts.firing_notice(condition, self.runtime.node_id, alert_id)
            if not self.notify(title, body):
                # ingest could not take it now: unclaim, so the next round tries again
                Alert.update(notified_at=None).where(Alert.id == alert_id).execute()

    def _claim_notice(self, alert_id: int, now: float) -> bool:
        """Actor thread: of the nodes sharing the database, the one whose update sets
        notified_at sends. A database error raises to `round`."""
        claimed = (
            Alert.update(notified_at=now)
            .where((Alert.id == alert_id) & Alert.notified_at.is_null())
            .execute()
        )
        return bool(claimed)

    def _resolve(self, alert: Alert, notify: bool, now: float) -> None:
        """Actor thread: resolve one alert once (across nodes), notify if planned. A database
        error raises to `round`."""
        resolved = (
            Alert.update(state="resolved", resolved_at=now, last_at=now)
            .where((Alert.id == alert.id) & (Alert.state == "firing"))
            .execute()
        )
        if not resolved:
            return
        log.info("alert %d resolved: %s on %s", alert.id, alert.rule, alert.key)
        if notify:
            self.notify(
                *alerts.resolved_notice(alert.rule, alert.key, alert.message, alert.first_at, now)
            )

    def notify(self, title: str, body: str) -> bool:
        """Actor thread: send a message to every `monitor.alert_channels` entry (user/channel, admins only).

        Goes through ingest like any message, so it gets retries and a timeline. Returns
        False when ingest could not take it now (the caller tries again next round).
        """
        targets: dict[str, list[str]] = defaultdict(list)
        for item in self.settings.monitor.alert_channels:
            username, _, channel = item.partition("/")
            targets[username].append(channel)
        taken = True
        for username, channels in targets.items():
            user = User.get_or_none(
                (User.username == username) & (User.role == "admin") & ~User.disabled
            )
            if user is None:
                log.warning("monitor: alert channels of %r skipped: not an enabled admin", username)
                continue
            draft = Draft(
                user_id=user.id, title=title[:256], body=body, priority=5, channels=list(channels)
            )
            try:
                self.runtime.ingest.accept(draft, timeout=NOTIFY_TIMEOUT_SECONDS)
            except IngestError as exc:
                log.warning("monitor: alert to %s not sent: %s", username, exc.message)
            except IngestUnavailable as exc:
                log.warning("monitor: alert to %s delayed: %s", username, exc)
                taken = False
        return taken
