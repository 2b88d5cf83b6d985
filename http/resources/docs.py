"""/openapi.json and /docs: the API description and a small self-contained viewer of it."""

from __future__ import annotations

import html
import json

import falcon

from messagepusher.actors.channels import config_json_schemas
from messagepusher.http import openapi
from messagepusher.http.routes import PUBLIC, Op, Route

VERSION = "0.1.0"


class OpenAPIDocument:
    def __init__(self, runtime):
        self.runtime = runtime
        self._doc = None

    def document(self) -> dict:
        if self._doc is None:
            self._doc = openapi.build(self.runtime.routes, config_json_schemas(), VERSION)
        return self._doc

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document()


class DocsPage:
    """Renders the document as plain HTML, so it works without any CDN."""

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        doc = openapi.build(self.runtime.routes, config_json_schemas(), VERSION)
        rows = []
        for path, item in doc["paths"].items():
            for method, op in item.items():
                body = ""
                ref = (
                    op.get("requestBody", {})
                    .get("content", {})
                    .get("application/json", {})
                    .get("schema", {})
                    .get("$ref")
                )
                if ref:
                    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
                    body = f"<details><summary>body</summary><pre>{html.escape(json.dumps(schema, indent=2, ensure_ascii=False))}</pre></details>"
                rows.append(
                    f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                    f"<td>{html.escape(op['summary'])}</td><td><code>{html.escape(op['x-permission'])}</code></td>"
                    f"<td>{body}</td></tr>"
                )
        resp.content_type = falcon.MEDIA_HTML
        resp.text = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>MessagePusher API</title>"
            "<style>body{font:14px system-ui;margin:2em}td{border-bottom:1px solid #ddd;padding:4px 8px;vertical-align:top}"
            "pre{font-size:12px}</style><h1>MessagePusher API</h1>"
            "<p>Machine-readable: <a href=/openapi.json>/openapi.json</a>. Authenticate with "
            "<code>Authorization: Bearer mp_…</code>.</p><table><tr><th>method</th><th>path</th><th>what</th>"
            "<th>permission</th><th>request</th></tr>" + "".join(rows) + "</table></html>"
        )


ROUTES = [
    Route(
        "/openapi.json",
        "docs:OpenAPIDocument",
        {"GET": Op(PUBLIC, "This API's OpenAPI document")},
        tag="docs",
    ),
    Route(
        "/docs",
        "docs:DocsPage",
        {"GET": Op(PUBLIC, "A readable view of the OpenAPI document")},
        tag="docs",
    ),
]
