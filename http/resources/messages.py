"""/api/v1/messages: send, list, show, retry, cancel, recall and edit messages.

Sending hands a Draft to the ingest actor and answers 202 only after its commit.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import falcon
from pydantic import Field, ValidationError, model_validator

from messagepusher.actors import recall
from messagepusher.actors.channel_pool import delivery_view
from messagepusher.actors.ingest import Draft, IngestError, IngestUnavailable
from messagepusher.http import params
from messagepusher.http.auth import get_owned, owner_filter
from messagepusher.http.errors import APIError, unprocessable, validation_error
from messagepusher.http.params import Param
from messagepusher.http.resources.common import newest_page, read_model, read_object
from messagepusher.http.routes import Op, Route
from messagepusher.http.schemas import MessageIn, Strict
from messagepusher.messages import lifecycle, store
from messagepusher.supervisor.models import Delivery, Message
from messagepusher.supervisor.timefmt import to_rfc3339

STATUSES = (
    "accepted",
    "scheduled",
    "fetching",
    "ai_processing",
    "queued",
    "sending",
    *lifecycle.MESSAGE_FINAL,
)


def summary(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "user_id": m.user_id,
        "title": m.title,
        "format": m.format,
        "url": m.url,
        "priority": m.priority,
        "status": m.status,
        "created_at": to_rfc3339(m.created_at),
        "updated_at": to_rfc3339(m.updated_at),
        "send_at": to_rfc3339(m.send_at),
        "finished_at": to_rfc3339(m.finished_at),
    }


def detail(m: Message) -> dict[str, Any]:
    out = summary(m)
    out["body"] = m.body
    out["callback_url"] = m.callback_url
    out["ai_request"] = m.ai_request
    out["deliveries"] = [
        delivery_view(d)
        for d in Delivery.select().where(Delivery.message == m.id).order_by(Delivery.id)
    ]
    out["events"] = [
        {"at": to_rfc3339(at), "type": kind, "detail": event_detail}
        for at, kind, event_detail in store.timeline(m.id)
    ]
    out["fetched"] = m.fetched
    if m.ai_result:
        out["ai"] = {
            k: m.ai_result.get(k)
            for k in ("status", "task", "provider", "result", "label", "tags", "model", "error")
        }
    else:
        out["ai"] = None
    return out


class MessageEdit(Strict):
    title: str | None = Field(None, max_length=256)
    body: str | None = Field(None, max_length=65_536)

    @model_validator(mode="after")
    def _something_new(self) -> MessageEdit:
        if self.title is None and self.body is None:
            raise ValueError("give a new title or body")
        return self


def with_changes(m: Message, changes: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The message as GET shows it, each delivery carrying the `change` just made to it."""
    out = detail(m)
    for delivery in out["deliveries"]:
        delivery["change"] = changes.get(delivery["id"])
    return out


def request_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class Messages:
    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        raw = read_object(req)
        body = _validate(raw)
        send_at = body.send_at.timestamp() if body.send_at else None
        days = self.runtime.settings.limits.max_schedule_days
        if send_at is not None and send_at > self.runtime.clock.now() + days * 86400:
            raise unprocessable(
                "send_at",
                f"must be at most {days} days from now (limits.max_schedule_days)",
                body.send_at.isoformat(),
            )
        if (
            body.ai
            and body.ai.provider
            and body.ai.provider not in self.runtime.settings.ai.providers
        ):
            raise unprocessable(
                "ai.provider",
                f"unknown provider; configured: {', '.join(sorted(self.runtime.settings.ai.providers))}",
                body.ai.provider,
            )
        if not self.runtime.accepting:
            raise APIError(
                503,
                "not_ready",
                "the service is not taking new messages right now",
                headers={"Retry-After": "5"},
            )
        key = req.get_header("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 255:
            raise unprocessable("Idempotency-Key", "must be 1 to 255 characters", key[:80])
        draft = Draft(
            user_id=req.context.principal.user_id,
            title=body.title,
            body=body.body,
            format=body.format,
            url=body.url,
            priority=body.priority,
            channels=body.channels,
            ai=body.ai.model_dump(exclude_none=True) if body.ai else None,
            send_at=send_at,
            callback_url=body.callback_url,
            idempotency_key=key,
            request_hash=request_hash(raw) if key else None,
        )
        try:
            accepted = self.runtime.ingest.accept(draft)
        except IngestError as exc:
            details = (
                [{"field": exc.field, "message": exc.message, "value": exc.value}]
                if exc.field
                else None
            )
            raise APIError(exc.status, exc.code, exc.message, details) from None
        except IngestUnavailable as exc:
            raise APIError(503, "not_ready", str(exc), headers={"Retry-After": "1"}) from None
        resp.status = falcon.HTTP_202
        resp.media = {"id": accepted.id, "status": accepted.status}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status = params.value(req, "status")
        channel = params.value(req, "channel")
        through = None
        if channel:
            through = Message.id.in_(
                Delivery.select(Delivery.message).where(
                    (Delivery.channel_name == channel)
                    | (Delivery.channel == (params.as_id(channel) or -1))
                )
            )
        since, until = params.value(req, "since"), params.value(req, "until")
        resp.media = newest_page(
            req,
            Message,
            summary,
            owner_filter(req, Message),
            Message.status == status if status else None,
            through,
            Message.created_at >= since if since is not None else None,
            Message.created_at < until if until is not None else None,
        )

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, message_id: int) -> None:
        resp.media = detail(get_owned(req, Message, message_id, "message"))

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, message_id: int) -> None:
        """Recall: cancel what is not sent, take back what was where the channel can.

        HTTP worker thread; waits on each channel's service (its timeout bounds each call).
        """
        message = get_owned(req, Message, message_id, "message")
        changes = recall.change(self.runtime, message, "recall", req.context.principal.username)
        resp.media = with_changes(Message.get_by_id(message.id), changes)

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, message_id: int) -> None:
        """Edit: the new title/body replace the sent text where the channel can change it."""
        message = get_owned(req, Message, message_id, "message")
        body = read_model(req, MessageEdit)
        changes = recall.change(
            self.runtime,
            message,
            "edit",
            req.context.principal.username,
            title=body.title,
            body=body.body,
        )
        resp.media = with_changes(Message.get_by_id(message.id), changes)


def _validate(raw: dict[str, Any]) -> MessageIn:
    try:
        return MessageIn.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


class MessageRetry:
    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response, message_id: int) -> None:
        """Re-queue the failed and dead deliveries (`store.retry`). HTTP worker thread."""
        message = get_owned(req, Message, message_id, "message")
        ids = store.retry(
            self.runtime.mailbox,
            message,
            req.context.principal.username,
            self.runtime.clock.now(),
        )
        if not ids:
            raise APIError(
                409,
                "nothing_to_retry",
                f"message {message.id} has no failed or dead deliveries (status {message.status})",
            )
        self.runtime.wake("channel_pool")
        resp.status = falcon.HTTP_202
        resp.media = {
            "id": message.id,
            "status": lifecycle.STAGE_STATUS["send"],
            "retried_deliveries": ids,
        }


class MessageCancel:
    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response, message_id: int) -> None:
        """Cancel what is not sent yet (`store.cancel`); 409 when already final. HTTP worker thread."""
        message = get_owned(req, Message, message_id, "message")
        if not store.cancel(
            self.runtime.mailbox,
            message.id,
            req.context.principal.username,
            self.runtime.clock.now(),
        ):
            status = Message.get_by_id(message.id).status
            raise APIError(409, "already_final", f"message {message.id} is already {status}")
        resp.media = detail(Message.get_by_id(message.id))


ROUTES = [
    Route(
        "/api/v1/messages",
        "messages:Messages",
        {
            "POST": Op("messages:send", "Send a message", MessageIn, status=202),
            "GET": Op(
                "messages:read",
                "List messages, newest first",
                query=(
                    Param("status", "enum", choices=STATUSES),
                    Param("channel", max_length=64, description="a channel name or id"),
                    "since",
                    "until",
                    "limit",
                    "cursor",
                    "user",
                ),
            ),
        },
        tag="messages",
    ),
    Route(
        "/api/v1/messages/{message_id}",
        "messages:Messages",
        {
            "GET": Op(
                "messages:read",
                "One message with its deliveries, timeline, fetched text and AI result",
            ),
            "DELETE": Op(
                "messages:send",
                "Recall: cancel what is not sent, take back what was where the channel can",
            ),
            "PATCH": Op("messages:send", "Edit the sent text where the channel can", MessageEdit),
        },
        tag="messages",
        suffix="item",
    ),
    Route(
        "/api/v1/messages/{message_id}/retry",
        "messages:MessageRetry",
        {
            "POST": Op("messages:send", "Re-queue the failed and dead deliveries", status=202),
        },
        tag="messages",
    ),
    Route(
        "/api/v1/messages/{message_id}/cancel",
        "messages:MessageCancel",
        {
            "POST": Op("messages:send", "Cancel a message that is not final yet"),
        },
        tag="messages",
    ),
]
