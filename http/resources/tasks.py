"""/api/v1/tasks: the mailbox entries behind every message, and hand intervention on them.

Retry, cancel and bulk re-drive go through operations/task_control.py; pausing a mailbox or a channel
is a row in the `pause` table, which every process's claims read.
"""

from __future__ import annotations

from typing import Any, Literal

import falcon
import peewee
from pydantic import Field

from messagepusher.http import params
from messagepusher.http.audit import note
from messagepusher.http.auth import owner_filter
from messagepusher.http.confirm import require_confirmation
from messagepusher.http.errors import APIError, not_found
from messagepusher.http.params import Param
from messagepusher.http.resources.common import listing, next_cursor, page, read_model
from messagepusher.http.routes import Op, Route
from messagepusher.http.schemas import Strict
from messagepusher.operations import task_control
from messagepusher.supervisor.actor import PoolActor, SerialActor
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.mailbox import PARKED_AT, payload_number
from messagepusher.supervisor.models import Channel, Delivery, MailboxEntry, Pause
from messagepusher.supervisor.supervisor import CHILD_CLASSES, child_class
from messagepusher.supervisor.timefmt import to_rfc3339

ADMIN = "admin"
STATES = ("ready", "leased", "failed", "dead", "done", "cancelled")
BULK_CONFIRM_ABOVE = 100  # a re-drive of more entries needs X-Confirm
BULK_LIMIT = 10_000
SHOWN_REFUSALS = 50


def mailbox_names() -> tuple[str, ...]:
    """The actors that claim from a mailbox, in start order: what can be listed and paused."""
    return tuple(
        name for name in CHILD_CLASSES if issubclass(child_class(name), SerialActor | PoolActor)
    )


MAILBOXES = mailbox_names()


class TaskRetryFilter(Strict):
    mailbox: Literal[MAILBOXES] | None = Field(None, description="one mailbox; default: all")  # type: ignore[valid-type]
    state: Literal["dead", "failed", "ready"] = Field(
        "dead", description="the entries to re-drive; dead letters by default"
    )
    kind: str | None = Field(None, max_length=32, description="send, fetch, ai, callback …")
    message_id: int | None = Field(None, ge=1, le=params.MAX_ID)
    limit: int = Field(
        1000, ge=1, le=BULK_LIMIT, description=f"at most this many, oldest first (≤ {BULK_LIMIT})"
    )


# --- views ---------------------------------------------------------------------------------


def task_view(e: MailboxEntry, paused: bool) -> dict[str, Any]:
    payload = e.payload or {}
    parked = e.available_at >= PARKED_AT
    return {
        "id": e.id,
        "mailbox": e.recipient,
        "kind": e.kind,
        "state": e.state,
        "priority": e.priority,
        "attempts": e.attempts,
        "max_attempts": e.max_attempts,
        "available_at": None if parked else to_rfc3339(e.available_at),
        "lease_owner": e.lease_owner,
        "lease_expires_at": to_rfc3339(e.lease_expires_at),
        "last_error": e.last_error,
        "message_id": payload.get("message_id"),
        "delivery_id": payload.get("delivery_id"),
        "user_id": e.user_id,
        "paused": paused or parked,
        "created_at": to_rfc3339(e.created_at),
        "updated_at": to_rfc3339(e.updated_at),
    }


def task_views(runtime, entries: list[MailboxEntry]) -> list[dict[str, Any]]:
    """Views of a page of entries, each saying whether a pause holds it (three queries at most)."""
    mailboxes, channels = runtime.mailbox.pauses()
    held: set[int] = set()
    if channels:
        deliveries = {
            (e.payload or {}).get("delivery_id"): e.id for e in entries if e.kind == "send"
        }
        held = {
            deliveries[d]
            for (d,) in Delivery.select(Delivery.id)
            .where(Delivery.id.in_([d for d in deliveries if d]) & Delivery.channel.in_(channels))
            .tuples()
        }
    return [task_view(e, e.recipient in mailboxes or e.id in held) for e in entries]


def pauses_view() -> dict[str, Any]:
    """Every pause in force: {"mailboxes": […], "channels": […]}, oldest first."""
    out: dict[str, Any] = {"mailboxes": [], "channels": []}
    query = (
        Pause.select(Pause, Channel)
        .join(Channel, peewee.JOIN.LEFT_OUTER, on=(Pause.channel == Channel.id))
        .order_by(Pause.id)
    )
    for p in query:
        since = {"paused_by": p.paused_by, "paused_at": to_rfc3339(p.paused_at)}
        if p.mailbox is not None:
            out["mailboxes"].append({"name": p.mailbox, **since})
        elif p.channel_id is not None:
            c = p.channel
            out["channels"].append(
                {"id": c.id, "name": c.name, "type": c.type, "user_id": c.user_id, **since}
            )
    return out


# --- scoping -------------------------------------------------------------------------------


def get_task(req: falcon.Request, task_id: int) -> MailboxEntry:
    """One entry the caller may see; another user's is a 404, like a missing one."""
    query = MailboxEntry.select().where(MailboxEntry.id == task_id)
    principal = req.context.principal
    if not principal.is_admin:
        query = query.where(MailboxEntry.user_id == principal.user_id)
    entry = query.first()
    if entry is None:
        raise not_found("task")
    return entry


class Resource:
    def __init__(self, runtime):
        self.runtime = runtime


# --- tasks ---------------------------------------------------------------------------------


class Tasks(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = page(req)
        mailbox, state = params.value(req, "mailbox"), params.value(req, "state")
        message_id = params.value(req, "message_id")
        query = MailboxEntry.select().order_by(MailboxEntry.id.desc()).limit(limit)
        for condition in (
            owner_filter(req, MailboxEntry, MailboxEntry.user_id),
            MailboxEntry.recipient == mailbox if mailbox else None,
            MailboxEntry.state == state if state else None,
            payload_number(self.runtime.db, "message_id") == message_id if message_id else None,
            MailboxEntry.id < cursor if cursor is not None else None,
        ):
            if condition is not None:
                query = query.where(condition)
        rows = list(query)
        resp.media = listing(task_views(self.runtime, rows), next_cursor(rows, limit))

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, task_id: int) -> None:
        resp.media = task_views(self.runtime, [get_task(req, task_id)])[0]


class TaskRetry(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, task_id: int) -> None:
        entry = get_task(req, task_id)
        # One transaction around the action and the answer: the entry as the action left it,
        # before any worker can take it.
        with write_transaction():
            outcome = task_control.retry(self.runtime, [entry], req.context.principal.username)
            resp.media = task_views(self.runtime, [MailboxEntry.get_by_id(entry.id)])[0]
        if outcome.refused:
            raise APIError(
                409,
                "not_retryable",
                f"task {entry.id} cannot be retried: {outcome.refused[entry.id]}",
            )
        self._wake(outcome.wake)

    def _wake(self, recipients: set[str]) -> None:
        for recipient in recipients:
            self.runtime.wake(recipient)


class TaskCancel(TaskRetry):
    def on_post(self, req: falcon.Request, resp: falcon.Response, task_id: int) -> None:
        entry = get_task(req, task_id)
        with write_transaction():
            outcome = task_control.cancel(self.runtime, entry, req.context.principal.username)
            resp.media = task_views(self.runtime, [MailboxEntry.get_by_id(entry.id)])[0]
        if outcome.refused:
            raise APIError(
                409,
                "not_cancellable",
                f"task {entry.id} cannot be cancelled: {outcome.refused[entry.id]}",
            )
        self._wake(outcome.wake)


class TasksRetry(TaskRetry):
    """Bulk re-drive of a dead-letter queue (or of failed or ready entries), oldest first."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_model(req, TaskRetryFilter)
        query = (
            MailboxEntry.select()
            .where(MailboxEntry.state == body.state)
            .order_by(MailboxEntry.id)
            .limit(body.limit)
        )
        if body.mailbox:
            query = query.where(MailboxEntry.recipient == body.mailbox)
        if body.kind:
            query = query.where(MailboxEntry.kind == body.kind)
        if body.message_id:
            query = query.where(payload_number(self.runtime.db, "message_id") == body.message_id)
        entries = list(query)
        if len(entries) > BULK_CONFIRM_ABOVE:
            require_confirmation(req, f"re-driving {len(entries)} entries")
        outcome = task_control.retry(self.runtime, entries, req.context.principal.username)
        self._wake(outcome.wake)
        note(
            req,
            f"{len(outcome.changed)} entries",
            matched=len(entries),
            retried=len(outcome.changed),
            refused=len(outcome.refused),
            filter=body.model_dump(exclude_none=True),
        )
        resp.media = {
            "matched": len(entries),
            "retried": len(outcome.changed),
            "refused": len(outcome.refused),
            "refusals": [
                {"id": entry_id, "reason": reason}
                for entry_id, reason in list(outcome.refused.items())[:SHOWN_REFUSALS]
            ],
            "more": len(entries) == body.limit,
        }


# --- pauses --------------------------------------------------------------------------------


class Pauses(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {**pauses_view(), "known_mailboxes": list(MAILBOXES)}


def _known_mailbox(name: str) -> str:
    if name not in MAILBOXES:
        raise APIError(
            404,
            "not_found",
            f"mailbox {name[:64]!r} not found; the mailboxes are {', '.join(MAILBOXES)}",
        )
    return name


def _pause_answer(mailbox: str | None = None, channel: Channel | None = None) -> dict[str, Any]:
    """A pause action's answer: what was acted on and whether it is paused now."""
    view = pauses_view()
    if mailbox is not None:
        held = next((m for m in view["mailboxes"] if m["name"] == mailbox), None)
        target: dict[str, Any] = {"mailbox": mailbox}
    else:
        held = next((c for c in view["channels"] if c["id"] == channel.id), None)
        target = {"channel": {"id": channel.id, "name": channel.name, "type": channel.type}}
    return {
        **target,
        "paused": held is not None,
        "paused_by": (held or {}).get("paused_by"),
        "paused_at": (held or {}).get("paused_at"),
    }


class MailboxPause(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        mailbox = _known_mailbox(name)
        self.runtime.mailbox.pause(req.context.principal.username, mailbox=mailbox)
        resp.media = _pause_answer(mailbox=mailbox)


class MailboxResume(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        mailbox = _known_mailbox(name)
        self.runtime.mailbox.resume(mailbox=mailbox)
        self.runtime.wake(mailbox)
        resp.media = _pause_answer(mailbox=mailbox)


def _channel(channel_id: int) -> Channel:
    channel = Channel.get_or_none(Channel.id == channel_id)
    if channel is None:
        raise not_found("channel")
    return channel


class ChannelPause(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, channel_id: int) -> None:
        channel = _channel(channel_id)
        self.runtime.mailbox.pause(req.context.principal.username, channel_id=channel.id)
        resp.media = _pause_answer(channel=channel)


class ChannelResume(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, channel_id: int) -> None:
        channel = _channel(channel_id)
        self.runtime.mailbox.resume(channel_id=channel.id)
        self.runtime.wake("channel_pool")
        resp.media = _pause_answer(channel=channel)


ROUTES = [
    Route(
        "/api/v1/tasks",
        "tasks:Tasks",
        {
            "GET": Op(
                "messages:read",
                "List mailbox entries (tasks), newest first: your own; an admin's, everyone's",
                query=(
                    Param("mailbox", "enum", choices=MAILBOXES),
                    Param("state", "enum", choices=STATES),
                    Param("message_id", "integer", description="the entries of one message"),
                    "limit",
                    "cursor",
                    "user",
                ),
            ),
        },
        tag="tasks",
    ),
    Route(
        "/api/v1/tasks/retry",
        "tasks:TasksRetry",
        {
            "POST": Op(
                ADMIN,
                "Re-drive the entries a filter matches, dead letters by default "
                f"(X-Confirm above {BULK_CONFIRM_ABOVE} entries)",
                TaskRetryFilter,
            ),
        },
        tag="tasks",
    ),
    Route(
        "/api/v1/tasks/{task_id}",
        "tasks:Tasks",
        {"GET": Op("messages:read", "One mailbox entry (task)")},
        tag="tasks",
        suffix="item",
    ),
    Route(
        "/api/v1/tasks/{task_id}/retry",
        "tasks:TaskRetry",
        {
            "POST": Op(
                "messages:send",
                "Retry an entry now with a fresh attempt budget (dead, failed or ready); a dead "
                "send's delivery is pending again",
            )
        },
        tag="tasks",
    ),
    Route(
        "/api/v1/tasks/{task_id}/cancel",
        "tasks:TaskCancel",
        {
            "POST": Op(
                "messages:send",
                "Cancel an entry that is not leased; a send's delivery is cancelled, a fetch or "
                "AI step cancels its message",
            )
        },
        tag="tasks",
    ),
    Route(
        "/api/v1/admin/pauses",
        "tasks:Pauses",
        {"GET": Op(ADMIN, "The paused mailboxes and channels, and every mailbox's name")},
        tag="admin",
    ),
    Route(
        "/api/v1/admin/mailboxes/{name}/pause",
        "tasks:MailboxPause",
        {"POST": Op(ADMIN, "Pause a mailbox on every node: its work stays ready, unclaimed")},
        tag="admin",
    ),
    Route(
        "/api/v1/admin/mailboxes/{name}/resume",
        "tasks:MailboxResume",
        {"POST": Op(ADMIN, "Resume a paused mailbox")},
        tag="admin",
    ),
    Route(
        "/api/v1/channels/{channel_id}/pause",
        "tasks:ChannelPause",
        {"POST": Op(ADMIN, "Pause sending through a channel on every node: its sends stay ready")},
        tag="channels",
    ),
    Route(
        "/api/v1/channels/{channel_id}/resume",
        "tasks:ChannelResume",
        {"POST": Op(ADMIN, "Resume a paused channel")},
        tag="channels",
    ),
]
