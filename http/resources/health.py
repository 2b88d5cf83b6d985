"""/healthz and /readyz: is the process answering, and is it fit to take work.

Readiness needs a writable database and every permanent actor alive.
"""

from __future__ import annotations

import falcon

from messagepusher.http.routes import PUBLIC, Op, Route
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import SchemaVersion


class Healthz:
    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


def readiness(runtime) -> tuple[bool, dict[str, str]]:
    """(ready, failing parts) — checked by /readyz and by the monitor's watchdog."""
    failing: dict[str, str] = {}
    try:
        with write_transaction():
            SchemaVersion.select().limit(1).execute()
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        failing["database"] = f"not writable: {exc}"
    if not runtime.accepting:
        failing["service"] = "stopping or restoring"
    try:
        status = runtime.supervisor_status()
    except Exception as exc:  # noqa: BLE001 - a busy supervisor is itself a failure
        status = {}
        failing["supervisor"] = f"did not answer: {exc}"
    for name, child in status.items():
        if child["restart_policy"] == "permanent" and not (
            child["alive"] and child["state"] == "running"
        ):
            failing[name] = f"{child['state']}; last error: {child['last_error']}"
        elif name in runtime.unresponsive:
            failing[name] = f"not answering pings for {runtime.unresponsive[name]:.1f}s"
    if not status and "supervisor" not in failing:
        failing["supervisor"] = "not running"
    return not failing, failing


class Readyz:
    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ready, failing = readiness(self.runtime)
        if ready:
            resp.media = {"status": "ready"}
            return
        resp.status = falcon.HTTP_503
        resp.media = {
            "error": {
                "code": "not_ready",
                "message": "not ready: " + ", ".join(sorted(failing)),
                "details": failing,
            }
        }


ROUTES = [
    Route(
        "/healthz",
        "health:Healthz",
        {"GET": Op(PUBLIC, "Liveness: the process answers")},
        tag="health",
    ),
    Route(
        "/readyz",
        "health:Readyz",
        {"GET": Op(PUBLIC, "Readiness: database writable, actors alive")},
        tag="health",
    ),
]
