"""GET /m/{token}: the public message page that short-text channels link to ("详情 / details").

Reachable only by the message's unguessable token; markdown and HTML bodies are sanitised, and the
page's Content-Security-Policy allows no script at all.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import falcon

from messagepusher.actors.channels.details_link import page_enabled
from messagepusher.actors.channels.http_common import ai_label, ai_result_text
from messagepusher.http.routes import PUBLIC, Op, Route
from messagepusher.supervisor.models import Message, User

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src https: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in this page's URL: never pass it on
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "no-cache",
}
STYLE = """
body{margin:0;font:16px/1.6 -apple-system,"PingFang SC","Microsoft YaHei",sans-serif;
color:#1f2328;background:#f6f8fa}
main{max-width:720px;margin:0 auto;padding:16px;background:#fff;min-height:100vh;
box-sizing:border-box;overflow-wrap:anywhere}
h1{font-size:1.35em;margin:.2em 0 .4em}.meta{color:#656d76;font-size:.85em}
.ai{background:#f0f6ff;border-left:3px solid #0969da;padding:8px 12px;margin:12px 0}
pre,code{white-space:pre-wrap;background:#f6f8fa}img{max-width:100%;height:auto}
table{border-collapse:collapse;display:block;overflow-x:auto}td,th{border:1px solid #d0d7de;
padding:4px 8px}a{color:#0969da}
"""
NOT_FOUND = "消息不存在或已删除 / This message does not exist or was removed."


def sanitise(markup: str) -> str:
    """`markup` without scripts, event handlers, javascript: links, styles, frames or forms. Pure."""
    from lxml_html_clean import Cleaner  # lxml is heavy: loaded with the first page

    if not markup.strip():
        return ""
    cleaner = Cleaner(
        scripts=True,
        javascript=True,
        comments=True,
        style=True,
        inline_style=True,
        links=True,
        meta=True,
        page_structure=True,
        processing_instructions=True,
        embedded=True,
        frames=True,
        forms=True,
        annoying_tags=True,
        remove_unknown_tags=True,
        safe_attrs_only=True,
        add_nofollow=True,
    )
    return cleaner.clean_html(markup)


def body_html(body: str, format: str) -> str:
    """The body as safe HTML: markdown rendered, HTML kept, both sanitised; text escaped. Pure."""
    if format == "markdown":
        import markdown  # only pages of markdown messages need it: not imported at start-up

        return sanitise(markdown.markdown(body, extensions=["extra", "sane_lists"]))
    if format == "html":
        return sanitise(body)
    paragraphs = (p for p in body.split("\n\n") if p.strip())
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)


def local_time(ts: float, zone: str | None) -> str:
    """`2026-11-29 12:30 (Asia/Shanghai)` in the owner's zone, else UTC. Pure."""
    try:
        tz = ZoneInfo(zone) if zone else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    return f"{datetime.fromtimestamp(ts, tz):%Y-%m-%d %H:%M} ({tz.key})"


def page(message: dict[str, Any], zone: str | None) -> str:
    """The whole page of one message (title, time, AI result, body, link). Pure."""
    title = (message["title"] or "").strip() or f"#{message['id']}"
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(local_time(message["created_at"], zone))}</p>',
    ]
    ai = message.get("ai_result") or {}
    ai_text = ai_result_text(ai) if ai.get("status") == "ok" else ""
    if ai_text:
        parts.append(
            f'<div class="ai"><strong>{html.escape(ai_label(ai))}:</strong> '
            f"{html.escape(ai_text)}</div>"
        )
    parts.append(body_html(message["body"] or "", message["format"]))
    if message["url"]:
        label = ((message.get("fetched") or {}).get("title") or "").strip() or message["url"]
        parts.append(
            f'<p>原文 / source: <a href="{html.escape(message["url"])}" '
            f'rel="noopener noreferrer nofollow">{html.escape(label)}</a></p>'
        )
    return document(title, "\n".join(parts))


def document(title: str, main: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>\n{main}\n</main></body></html>\n"
    )


class PublicMessage:
    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        """HTTP worker thread. A wrong token, a purged message or an owner who turned the page
        off all answer the same 404 page."""
        resp.content_type = "text/html; charset=utf-8"
        resp.set_headers(HEADERS)
        row = (
            Message.select(Message, User.preferences)
            .join(User)
            .where(Message.public_token == token)
            .first()
        )
        if row is None or not page_enabled(row.user.preferences):
            resp.status = falcon.HTTP_404
            resp.text = document("404", f"<p>{NOT_FOUND}</p>")
            return
        fields = {
            "id": row.id,
            "title": row.title,
            "body": row.body,
            "format": row.format,
            "url": row.url,
            "created_at": row.created_at,
            "ai_result": row.ai_result,
            "fetched": row.fetched,
        }
        resp.text = page(fields, (row.user.preferences or {}).get("timezone"))


ROUTES = [
    Route(
        "/m/{token}",
        "public:PublicMessage",
        {"GET": Op(PUBLIC, "The public page of one message, by its unguessable token", html=True)},
        tag="public",
    ),
]
