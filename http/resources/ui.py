"""The web UI: static files from http/ui/ served at / and /ui/{name}, Bootstrap's beside them.

The UI is a client of the JSON API; these routes are public, the data behind them is not.
Bootstrap 5 is shipped in http/ui/vendor/ as its release files, unchanged (see the README there):
every PyPI package of it is source-only with a build that current setuptools refuses, and an
install must work with whatever pip is there.
"""

from __future__ import annotations

from pathlib import Path

import falcon

from messagepusher.http.errors import not_found
from messagepusher.http.routes import PUBLIC, Op, Route

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
VENDOR_DIR = UI_DIR / "vendor"
VENDOR = {
    "bootstrap.min.css": VENDOR_DIR / "bootstrap.min.css",
    "bootstrap.bundle.min.js": VENDOR_DIR / "bootstrap.bundle.min.js",
}
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
    """Serves the UI's own files and the vendored toolkit. HTTP worker thread; a name not in the
    table is a 404 (no path is ever joined from the request)."""

    def __init__(self, runtime):
        self.files = {p.name: p for p in UI_DIR.iterdir() if p.suffix in TYPES}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._serve(resp, self.files.get("index.html"), "no-cache")

    def on_get_file(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name in VENDOR:
            # The vendored release changes only with a new version of MessagePusher.
            self._serve(resp, VENDOR[name], "max-age=86400")
        else:
            self._serve(resp, self.files.get(name), "no-cache")

    def _serve(self, resp: falcon.Response, path: Path | None, cache: str) -> None:
        if path is None:
            raise not_found("file")
        resp.content_type = TYPES[path.suffix]
        resp.set_headers(SECURITY_HEADERS)
        resp.cache_control = [cache]
        resp.data = path.read_bytes()


ROUTES = [
    Route("/", "ui:UIFiles", {"GET": Op(PUBLIC, "The web UI")}, tag="ui"),
    Route(
        "/ui/{name}",
        "ui:UIFiles",
        {"GET": Op(PUBLIC, "Web UI assets, Bootstrap 5 among them")},
        tag="ui",
        suffix="file",
    ),
]
