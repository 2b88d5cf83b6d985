"""The web UI: static files from http/ui/ served at / and /ui/{name}.

The UI is a client of the JSON API; these routes are public, the data behind them is not.
"""

from __future__ import annotations

from pathlib import Path

import falcon

from messagepusher.http.errors import not_found
from messagepusher.http.routes import PUBLIC, Op, Route

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class UIFiles:
    def __init__(self, runtime):
        self.files = {p.name: p for p in UI_DIR.iterdir() if p.suffix in TYPES}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._serve(resp, "index.html")

    def on_get_file(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self._serve(resp, name)

    def _serve(self, resp: falcon.Response, name: str) -> None:
        path = self.files.get(name)
        if path is None:
            raise not_found("file")
        resp.content_type = TYPES[path.suffix]
        resp.set_headers(SECURITY_HEADERS)
        resp.cache_control = ["no-cache"]
        resp.data = path.read_bytes()


ROUTES = [
    Route("/", "ui:UIFiles", {"GET": Op(PUBLIC, "The web UI")}, tag="ui"),
    Route(
        "/ui/{name}", "ui:UIFiles", {"GET": Op(PUBLIC, "Web UI assets")}, tag="ui", suffix="file"
    ),
]
