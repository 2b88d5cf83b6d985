"""/healthz and /readyz: is the process answering, and is it fit to take work.

What "ready" means is the runtime's (supervisor/health.py); these only answer it over HTTP.
"""

from __future__ import annotations

import falcon

from messagepusher.http.routes import PUBLIC, Op, Route
from messagepusher.supervisor.health import readiness


class Healthz:
    """GET /healthz, in an HTTP worker thread: the process answers. Never raises."""

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Readyz:
    """GET /readyz, in an HTTP worker thread: 200, or 503 naming what is not ready. Never raises."""

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
