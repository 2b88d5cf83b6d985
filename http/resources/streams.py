"""/api/v1/inbox and the two Server-Sent Event streams: the inbox for devices, status changes for the UI.

Streams read the database (inbox, message events, alerts, component events), so they see work done by every process.
"""

from __future__ import annotations

import time
from typing import Any

import falcon

from messagepusher.http import params
from messagepusher.http.auth import Principal, get_owned, owner_filter
from messagepusher.http.errors import not_found, unprocessable
from messagepusher.http.params import Param
from messagepusher.http.resources.common import newest_page
from messagepusher.http.routes import Op, Route
from messagepusher.http.sse import Event, StreamSlots, run_stream
from messagepusher.messages import inbox, store
from messagepusher.supervisor.db import select_rows
from messagepusher.supervisor.models import InboxItem
from messagepusher.supervisor.timefmt import to_rfc3339

BATCH = 100


def item_view(row: InboxItem) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "message_id": row.message_id,
        "channel": {"id": row.channel_id, "name": row.channel_name, "type": row.channel_type},
        "title": row.title,
        "body": row.body,
        "format": row.format,
        "url": row.url,
        "priority": row.priority,
        "created_at": to_rfc3339(row.created_at),
        "read_at": to_rfc3339(row.read_at),
    }


def resume_point(req: falcon.Request, parts: int) -> list[int] | None:
    """The cursors in Last-Event-ID (or ?last_event_id= for clients that cannot set headers).

    None when neither is given; 422 naming the field when the value is not one this API sent.
    """
    raw = req.get_header("Last-Event-ID")
    field = "Last-Event-ID"
    if raw is None:
        raw, field = req.get_param("last_event_id"), "last_event_id"
    if raw is None or not raw.strip():
        return None
    pieces = raw.strip().split(".")
    if len(pieces) > parts or not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in pieces):
        example = ".".join(["42"] * parts)
        raise unprocessable(
            field,
            f"is not an event id this stream sent; pass the last id: as received, e.g. {example}",
            raw,
        )
    return [int(p) for p in pieces] + [0] * (parts - len(pieces))


class StreamResource:
    """Shared by both streams: the slot, the stream loop and its headers. HTTP worker thread."""

    def __init__(self, runtime):
        self.runtime = runtime
        settings = runtime.settings
        if getattr(runtime, "stream_slots", None) is None:
            runtime.stream_slots = StreamSlots(
                settings.streams.max_per_user,
                min(settings.streams.max_total, max(1, settings.server.threads // 2)),
                settings.streams.keepalive_seconds,
                runtime.metrics.sse_streams.set,
            )
        self.slots: StreamSlots = runtime.stream_slots

    def stream(self, resp: falcon.Response, principal: Principal, poll) -> None:
        """Answer with an open event stream; 429 (APIError) when no slot is free."""
        self.slots.acquire(principal.user_id)
        settings = self.runtime.settings.streams
        resp.content_type = "text/event-stream; charset=utf-8"
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")  # nginx: pass events on at once
        resp.stream = run_stream(
            poll,
            settings.keepalive_seconds,
            settings.max_seconds,
            settings.poll_seconds,
            self._stopping,
            time.monotonic,
            lambda: self.slots.release(principal.user_id),
        )

    def _stopping(self, seconds: float) -> bool:
        return self.runtime.shutdown_requested.wait(seconds) or not self.runtime.accepting


class Inbox:
    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        state = params.value(req, STATE)
        condition = None
        if state == "read":
            condition = InboxItem.read_at.is_null(False)
        elif state == "unread":
            condition = InboxItem.read_at.is_null()
        resp.media = newest_page(
            req,
            InboxItem,
            item_view,
            owner_filter(req, InboxItem),
            condition,
            InboxItem.recalled_at.is_null(),
        )

    def on_post_read(self, req: falcon.Request, resp: falcon.Response, item_id: int) -> None:
        row = get_owned(req, InboxItem, item_id, "inbox item")
        if row.recalled_at is not None:
            raise not_found("inbox item")  # recalled: gone for its owner too
        inbox.mark_read(row.id, self.runtime.clock.now())
        resp.media = item_view(InboxItem.get_by_id(row.id))


class InboxStream(StreamResource):
    """The caller's own client-channel messages, oldest first, each once; resumes after Last-Event-ID."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        resume = resume_point(req, 1)
        cursor = [resume[0] if resume is not None else inbox.last_id()]
        channel = params.value(req, CHANNEL)

        def poll() -> list[Event]:
            rows = inbox.streamed_after(principal.user_id, cursor[0], BATCH, channel)
            if rows:
                cursor[0] = rows[-1].id
            return [Event(str(row.id), "message", item_view(row)) for row in rows]

        self.stream(resp, principal, poll)


ALERTS = """
    SELECT id, rule, key, severity, state, message, first_at FROM alert
     WHERE id > ? ORDER BY id LIMIT ?"""
COMPONENT_EVENTS = """
    SELECT id, at, actor, event, detail, node FROM supervisor_event
     WHERE id > ? ORDER BY id LIMIT ?"""
# The cursors' sources after the message timeline (which the message store reads).
TABLES = ("alert", "supervisor_event")
CURSORS = 1 + len(TABLES)


class EventStream(StreamResource):
    """Status changes of the caller's messages; admins get everyone's, alerts and component events.

    The event id carries one cursor per source, `message.alert.component`, so one
    Last-Event-ID resumes all three.
    """

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        resume = resume_point(req, CURSORS)
        cursors = (
            resume if resume is not None else [store.last_event_id(), *(_max_id(t) for t in TABLES)]
        )
        admin = principal.is_admin
        owner = None if admin else principal.user_id

        def event_id() -> str:
            return ".".join(str(c) for c in cursors)

        def poll() -> list[Event]:
            events = []
            for event in store.events_after(cursors[0], owner, BATCH):
                cursors[0] = event.id
                events.append(Event(event_id(), "message", _timeline_event(event)))
            if not admin:
                return events
            for row in select_rows(ALERTS, (cursors[1], BATCH)):
                cursors[1] = row[0]
                events.append(Event(event_id(), "alert", _alert(row)))
            for row in select_rows(COMPONENT_EVENTS, (cursors[2], BATCH)):
                cursors[2] = row[0]
                events.append(Event(event_id(), "component", _component(row)))
            return events

        self.stream(resp, principal, poll)


def _max_id(table: str) -> int:
    return select_rows(f'SELECT MAX(id) FROM "{table}"')[0][0] or 0


def _timeline_event(event: store.TimelineEvent) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "message_id": event.message_id,
        "type": event.type,
        "at": to_rfc3339(event.at),
        "detail": event.detail,
        "message_status": event.message_status,
    }


def _alert(row: tuple) -> dict[str, Any]:
    alert_id, rule, key, severity, state, message, first_at = row
    return {
        "alert_id": alert_id,
        "rule": rule,
        "key": key,
        "severity": severity,
        "state": state,
        "message": message,
        "at": to_rfc3339(first_at),
    }


def _component(row: tuple) -> dict[str, Any]:
    event_id, at, actor, event, detail, node = row
    return {
        "event_id": event_id,
        "actor": actor,
        "event": event,
        "detail": detail,
        "node": node,
        "at": to_rfc3339(at),
    }


STATE = Param("state", "enum", choices=("read", "unread"), description="read or unread items only")
CHANNEL = Param("channel", "text", max_length=64, description="one client channel, by name")


def _resume_param(parts: int) -> Param:
    """?last_event_id=: the id a stream sent, for clients that cannot set Last-Event-ID."""
    return Param(
        "last_event_id",
        "text",
        max_length=18 * parts + parts - 1,
        pattern=rf"[0-9]{{1,18}}(\.[0-9]{{1,18}}){{0,{parts - 1}}}",
        description="the last event id received (the Last-Event-ID header does the same)",
    )


ROUTES = [
    Route(
        "/api/v1/inbox",
        "streams:Inbox",
        {
            "GET": Op(
                "messages:read",
                "Your inbox (client and none channels), newest first",
                query=("limit", "cursor", STATE, "user"),
            )
        },
        tag="inbox",
    ),
    Route(
        "/api/v1/inbox/{item_id}/read",
        "streams:Inbox",
        {"POST": Op("messages:read", "Mark an inbox item read")},
        tag="inbox",
        suffix="read",
    ),
    Route(
        "/api/v1/inbox/stream",
        "streams:InboxStream",
        {
            "GET": Op(
                "messages:read",
                "Server-Sent Events: your client-channel messages as they arrive; resume with Last-Event-ID",
                query=(CHANNEL, _resume_param(1)),
            )
        },
        tag="inbox",
    ),
    Route(
        "/api/v1/events/stream",
        "streams:EventStream",
        {
            "GET": Op(
                "messages:read",
                "Server-Sent Events: status changes of your messages (admins: all, alerts, components)",
                query=(_resume_param(CURSORS),),
            )
        },
        tag="inbox",
    ),
]
