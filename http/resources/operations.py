"""Operating the service over HTTP: status, run-time config, backups, jobs, alerts, logs, stats, /metrics.

Everything under /api/v1/admin needs an admin; /api/v1/stats is the caller's own; /metrics is public
unless metrics.token is set.
"""

from __future__ import annotations

import hmac
from typing import Any

import falcon
import psutil
import pykka
from prometheus_client import CONTENT_TYPE_LATEST

from messagepusher.actors.monitor import refresh_process_gauges, refresh_queue_gauges
from messagepusher.http import params
from messagepusher.http.auth import UNAUTHORIZED_HEADERS
from messagepusher.http.errors import APIError, not_found
from messagepusher.http.params import Param
from messagepusher.http.resources.common import listing, newest_page, read_object
from messagepusher.http.resources.tasks import pauses_view
from messagepusher.http.routes import PUBLIC, Op, Route
from messagepusher.http.schemas import ConfigPatch
from messagepusher.operations import backups, reports
from messagepusher.supervisor import logs
from messagepusher.supervisor.actor import PoolActor, PoolInfo
from messagepusher.supervisor.health import readiness
from messagepusher.supervisor.models import Alert, ConfigVersion, SupervisorEvent
from messagepusher.supervisor.nodes import cluster_counts, cluster_nodes
from messagepusher.supervisor.runtime_config import RuntimeConfigError, version_view
from messagepusher.supervisor.scheduler import UnknownJob
from messagepusher.supervisor.supervisor import child_class
from messagepusher.supervisor.timefmt import to_rfc3339

ADMIN = "admin"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ALERT_STATES = ("firing", "resolved")
_process = psutil.Process()


def _backup_error(exc: backups.BackupError) -> APIError:
    return APIError(exc.status, exc.code, str(exc))


class Resource:
    def __init__(self, runtime):
        self.runtime = runtime


class Status(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        runtime = self.runtime
        try:
            components = runtime.supervisor_status()
        except pykka.Timeout:
            components = {}
        for name, component in components.items():
            if issubclass(child_class(name), PoolActor):
                try:
                    pool = runtime.ask(name, PoolInfo(), timeout=2)
                except (pykka.ActorDeadError, pykka.Timeout):
                    pool = None
                component["pool"] = pool
            component["answering_pings"] = name not in runtime.unresponsive
            component["started_at"] = to_rfc3339(component.get("started_at"))
        ready, failing = readiness(runtime)
        resp.media = {
            "node": runtime.node_id,
            "started_at": to_rfc3339(runtime.started_at),
            "uptime_seconds": round(runtime.clock.now() - runtime.started_at, 1),
            "accepting": runtime.accepting,
            "ready": ready,
            "failing": failing,
            "components": components,
            "mailbox": refresh_queue_gauges(runtime),
            "paused": pauses_view(),  # {"mailboxes": […], "channels": […]}
            "resources": refresh_process_gauges(runtime, _process),
            "config_version": runtime.runtime_config.view()["version"]
            if runtime.runtime_config
            else 0,
            "scheduler_running": bool(runtime.scheduler and runtime.scheduler.scheduler.running),
            "cluster": cluster_counts(
                cluster_nodes(runtime.clock.now(), runtime.settings.server.node_stale_seconds)
            ),
        }


class Config(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.runtime.runtime_config.view()

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        try:
            resp.media = self.runtime.runtime_config.patch(
                read_object(req), principal.user_id, principal.username
            )
        except RuntimeConfigError as exc:
            raise _config_error(exc) from None


def _config_error(exc: RuntimeConfigError) -> APIError:
    return APIError(
        422,
        "invalid_config",
        str(exc),
        [{"field": exc.key, "message": str(exc), "value": exc.value}],
    )


class ConfigVersions(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = newest_page(req, ConfigVersion, version_view)


class ConfigRollback(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, version: int) -> None:
        principal = req.context.principal
        try:
            resp.media = self.runtime.runtime_config.rollback(
                version, principal.user_id, principal.username
            )
        except LookupError:
            raise not_found(f"configuration version {version}") from None
        except RuntimeConfigError as exc:
            raise _config_error(exc) from None


class Backups(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            items = backups.list_backups(self.runtime)
        except backups.BackupError as exc:
            raise _backup_error(exc) from None
        resp.media = listing(items, None)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            resp.media = backups.create_backup(self.runtime)
        except backups.BackupError as exc:
            raise _backup_error(exc) from None
        resp.status = falcon.HTTP_201


class BackupRestore(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        try:
            resp.media = backups.restore_backup_online(self.runtime, name)
        except backups.BackupError as exc:
            raise _backup_error(exc) from None


class Jobs(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = listing(self.runtime.scheduler.jobs(), None)


class JobRunNow(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        try:
            run_id = self.runtime.scheduler.run_now(name)
        except UnknownJob as exc:
            raise APIError(404, "not_found", str(exc)) from None
        resp.status = falcon.HTTP_202
        resp.media = {"job": name, "run_id": run_id, "status": "queued"}


def alert_view(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "rule": a.rule,
        "key": a.key,
        "severity": a.severity,
        "state": a.state,
        "message": a.message,
        "count": a.count,
        "first_at": to_rfc3339(a.first_at),
        "last_at": to_rfc3339(a.last_at),
        "resolved_at": to_rfc3339(a.resolved_at),
        "notified_at": to_rfc3339(a.notified_at),
        "acknowledged_by": a.acknowledged_by,
        "acknowledged_at": to_rfc3339(a.acknowledged_at),
    }


class Alerts(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        state, rule = params.value(req, "state"), params.value(req, "rule")
        resp.media = newest_page(
            req,
            Alert,
            alert_view,
            Alert.state == state if state else None,
            Alert.rule == rule if rule else None,
        )


class AlertAck(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, alert_id: int) -> None:
        alert = Alert.get_or_none(Alert.id == alert_id)
        if alert is None:
            raise not_found("alert")
        Alert.update(
            acknowledged_by=req.context.principal.username, acknowledged_at=self.runtime.clock.now()
        ).where(Alert.id == alert.id).execute()
        resp.media = alert_view(Alert.get_by_id(alert.id))


class Logs(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        records = logs.ring.query(
            params.value(req, "level"),
            params.value(req, "since"),
            params.value(req, "q"),
            params.value(req, "limit") or 200,
        )
        resp.media = listing([{**r, "at": to_rfc3339(r["at"])} for r in records], None)


def supervisor_event_view(e: SupervisorEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": to_rfc3339(e.at),
        "actor": e.actor,
        "event": e.event,
        "detail": e.detail,
        "node": e.node,
    }


class SupervisorEvents(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        actor, event = params.value(req, "actor"), params.value(req, "event")
        resp.media = newest_page(
            req,
            SupervisorEvent,
            supervisor_event_view,
            SupervisorEvent.actor == actor if actor else None,
            SupervisorEvent.event == event if event else None,
        )


class Stats(Resource):
    """The caller's own figures: today so far, and the stored daily reports."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user_id = req.context.principal.user_id
        start, end = reports.today_bounds(self.runtime.clock.now())
        resp.media = {
            "today": {"day": reports.day_of(start), **reports.user_figures(start, end, user_id)},
            "days": reports.stored("user", user_id, params.value(req, "days") or 7),
        }


class AdminStats(Resource):
    """The whole system's figures: today so far, and the stored daily reports."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        start, end = reports.today_bounds(self.runtime.clock.now())
        resp.media = {
            "today": {"day": reports.day_of(start), **reports.system_figures(start, end)},
            "days": reports.stored("system", None, params.value(req, "days") or 7),
        }


class Metrics(Resource):
    """Prometheus text format; a Bearer token is required when metrics.token is set."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        token = self.runtime.settings.metrics.token
        if token:
            scheme, _, presented = (req.get_header("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                presented.strip().encode(), token.encode()
            ):
                raise APIError(
                    401,
                    "unauthorized",
                    "this server's /metrics needs Authorization: Bearer <metrics.token>",
                    headers=UNAUTHORIZED_HEADERS,
                )
        refresh_queue_gauges(self.runtime)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self.runtime.metrics.render(self.runtime.settings.server.node_name)


ROUTES = [
    Route(
        "/api/v1/admin/status",
        "operations:Status",
        {
            "GET": Op(
                ADMIN,
                "Every component: state, restarts, last error, pool sizes; mailbox depths; resources",
            ),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/config",
        "operations:Config",
        {
            "GET": Op(ADMIN, "The run-time configurable keys: current values, overrides, version"),
            "PATCH": Op(
                ADMIN,
                "Change run-time keys live (a new version); null removes an override",
                ConfigPatch,
                sensitive=True,
            ),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/config/versions",
        "operations:ConfigVersions",
        {
            "GET": Op(
                ADMIN,
                "Configuration versions, newest first: who, when, diff",
                query=("limit", "cursor"),
            ),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/config/versions/{version}/rollback",
        "operations:ConfigRollback",
        {
            "POST": Op(
                ADMIN,
                "Make a version current again (0: the file alone); a new version",
                sensitive=True,
            ),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/backups",
        "operations:Backups",
        {
            "GET": Op(ADMIN, "Backups, newest first"),
            "POST": Op(ADMIN, "Take an online backup now", status=201),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/backups/{name}/restore",
        "operations:BackupRestore",
        {
            "POST": Op(
                ADMIN,
                "Restore a backup into the running service (new work gets 503 meanwhile)",
                sensitive=True,
            ),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/jobs",
        "operations:Jobs",
        {
            "GET": Op(ADMIN, "Scheduled jobs: schedule, next run, lock, last runs"),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/jobs/{name}/run",
        "operations:JobRunNow",
        {
            "POST": Op(ADMIN, "Run a job now, outside its schedule", status=202),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/alerts",
        "operations:Alerts",
        {
            "GET": Op(
                ADMIN,
                "Alerts, newest first",
                query=(
                    Param("state", "enum", choices=ALERT_STATES),
                    Param("rule", max_length=64),
                    "limit",
                    "cursor",
                ),
            ),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/alerts/{alert_id}/ack",
        "operations:AlertAck",
        {
            "POST": Op(ADMIN, "Acknowledge an alert"),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/logs",
        "operations:Logs",
        {
            "GET": Op(
                ADMIN,
                "Recent log records of this process",
                query=(
                    Param("level", "enum", choices=LOG_LEVELS, upper=True),
                    "since",
                    Param("q", max_length=256, description="text the record contains"),
                    Param("limit", "integer", 1, 5000, description="1 to 5000 (default 200)"),
                ),
            ),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/supervisor/events",
        "operations:SupervisorEvents",
        {
            "GET": Op(
                ADMIN,
                "Actor starts, crashes, hangs and restarts",
                query=(
                    Param("actor", max_length=64),
                    Param("event", max_length=64),
                    "limit",
                    "cursor",
                ),
            ),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/admin/stats",
        "operations:AdminStats",
        {
            "GET": Op(ADMIN, "System statistics: today so far and daily reports", query=("days",)),
        },
        tag="admin",
    ),
    Route(
        "/api/v1/stats",
        "operations:Stats",
        {
            "GET": Op(
                "messages:read", "Your statistics: today so far and daily reports", query=("days",)
            ),
        },
        tag="stats",
    ),
    Route(
        "/metrics",
        "operations:Metrics",
        {
            "GET": Op(PUBLIC, "Prometheus metrics (Bearer metrics.token when set)"),
        },
        tag="health",
    ),
]
