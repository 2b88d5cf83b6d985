"""/api/v1/schedules: recurring messages (cron or every_seconds), their next runs and past fires.

Saving a schedule queues its next fire for the schedules actor; run-now goes through ingest here.
"""

from __future__ import annotations

from typing import Any

import falcon
from peewee import IntegrityError
from pydantic import Field, StrictBool, StrictInt, model_validator

from messagepusher.actors.ingest import IngestUnavailable
from messagepusher.actors.schedule_runner import queue_next, record, submit, trigger_of
from messagepusher.http.audit import note
from messagepusher.http.auth import get_owned, owner_filter
from messagepusher.http.errors import APIError, unprocessable
from messagepusher.http.resources.common import newest_page, read_model
from messagepusher.http.routes import Op, Route
from messagepusher.http.schemas import MessageIn, Strict
from messagepusher.messages import recurrence
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import Schedule, ScheduleFire
from messagepusher.supervisor.timefmt import to_rfc3339

RECENT_FIRES = 10
MIN_EVERY_SECONDS = 1


class ScheduledMessage(MessageIn):
    @model_validator(mode="after")
    def _no_send_at(self) -> ScheduledMessage:
        if self.send_at is not None:
            raise ValueError("a schedule's message has no send_at: the schedule decides when")
        return self


class ScheduleIn(Strict):
    name: str = Field(min_length=1, max_length=64)
    cron: str | None = Field(
        None, max_length=120, description="five fields: minute hour day month day_of_week"
    )
    every_seconds: StrictInt | None = Field(None, ge=MIN_EVERY_SECONDS, le=366 * 86400)
    timezone: str | None = Field(
        None, max_length=64, description="IANA name; default server.timezone"
    )
    message: ScheduledMessage
    enabled: StrictBool = True
    misfire_grace_seconds: StrictInt = Field(300, ge=0, le=7 * 86400)

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleIn:
        if bool(self.cron) == bool(self.every_seconds):
            raise ValueError("give exactly one of cron or every_seconds")
        return self


class SchedulePatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=64)
    cron: str | None = Field(None, max_length=120)
    every_seconds: StrictInt | None = Field(None, ge=MIN_EVERY_SECONDS, le=366 * 86400)
    timezone: str | None = Field(None, max_length=64)
    message: ScheduledMessage | None = None
    enabled: StrictBool | None = None
    misfire_grace_seconds: StrictInt | None = Field(None, ge=0, le=7 * 86400)


def server_timezone(runtime) -> str:
    """server.timezone, else the host's zone, else UTC."""
    if runtime.settings.server.timezone:
        return runtime.settings.server.timezone
    import tzlocal

    return tzlocal.get_localzone_name() or "UTC"


def fire_view(f: ScheduleFire) -> dict[str, Any]:
    return {
        "fire_at": to_rfc3339(f.fire_at),
        "outcome": f.outcome,
        "message_id": f.message_id,
        "detail": f.detail,
        "at": to_rfc3339(f.at),
    }


def view(s: Schedule, now: float) -> dict[str, Any]:
    tz = recurrence.zone(s.timezone)
    runs = recurrence.next_runs(trigger_of(s), now) if s.enabled else []
    fires = (
        ScheduleFire.select()
        .where(ScheduleFire.schedule == s.id)
        .order_by(ScheduleFire.fire_at.desc())
        .limit(RECENT_FIRES)
    )
    return {
        "id": s.id,
        "user_id": s.user_id,
        "name": s.name,
        "cron": s.cron,
        "every_seconds": s.every_seconds,
        "timezone": s.timezone,
        "message": s.message,
        "enabled": s.enabled,
        "misfire_grace_seconds": s.misfire_grace_seconds,
        "next_runs": [recurrence.rfc3339_in(t, tz) for t in runs],
        "last_fire_at": to_rfc3339(s.last_fire_at),
        "recent_fires": [fire_view(f) for f in fires],
        "created_at": to_rfc3339(s.created_at),
        "updated_at": to_rfc3339(s.updated_at),
    }


def checked_timing(cron: str | None, every: int | None, timezone: str) -> None:
    """422 naming the cron field or the time zone that cannot be used."""
    try:
        recurrence.trigger_for(cron, every, recurrence.zone(timezone))
    except recurrence.RecurrenceError as exc:
        raise unprocessable(exc.field, exc.message, exc.value) from None


def name_taken(name: str) -> APIError:
    return APIError(409, "name_taken", f"you already have a schedule named {name!r}")


class Schedules:
    """Every responder runs in an HTTP worker thread; errors are APIErrors (404, 409, 422)."""

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        now = self.runtime.clock.now()
        resp.media = newest_page(req, Schedule, lambda s: view(s, now), owner_filter(req, Schedule))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_model(req, ScheduleIn)
        timezone = body.timezone or server_timezone(self.runtime)
        checked_timing(body.cron, body.every_seconds, timezone)
        now = self.runtime.clock.now()
        try:
            with write_transaction():
                row = Schedule.create(
                    user=req.context.principal.user_id,
                    name=body.name,
                    cron=body.cron,
                    every_seconds=body.every_seconds,
                    timezone=timezone,
                    message=body.message.model_dump(mode="json", exclude_none=True),
                    enabled=body.enabled,
                    misfire_grace_seconds=body.misfire_grace_seconds,
                    created_at=now,
                    updated_at=now,
                )
                queue_next(self.runtime.mailbox, row, recurrence.next_fire(trigger_of(row), now))
        except IntegrityError:
            raise name_taken(body.name) from None
        self.runtime.wake("dispatcher")
        note(req, target=f"schedule:{row.id}")
        resp.status = falcon.HTTP_201
        resp.media = view(row, now)

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, schedule_id: int) -> None:
        resp.media = view(
            get_owned(req, Schedule, schedule_id, "schedule"), self.runtime.clock.now()
        )

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, schedule_id: int) -> None:
        row = get_owned(req, Schedule, schedule_id, "schedule")
        body = read_model(req, SchedulePatch)
        given = body.model_fields_set
        if "cron" in given and "every_seconds" in given and body.cron and body.every_seconds:
            raise unprocessable("cron", "give exactly one of cron or every_seconds", body.cron)
        cron, every = row.cron, row.every_seconds
        if body.cron:
            cron, every = body.cron, None
        elif body.every_seconds:
            cron, every = None, body.every_seconds
        timezone = body.timezone or row.timezone
        checked_timing(cron, every, timezone)
        now = self.runtime.clock.now()
        changes: dict[str, Any] = {
            "cron": cron,
            "every_seconds": every,
            "timezone": timezone,
            "revision": row.revision + 1,
            "updated_at": now,
        }
        if body.name is not None:
            changes["name"] = body.name
        if body.message is not None:
            changes["message"] = body.message.model_dump(mode="json", exclude_none=True)
        if body.enabled is not None:
            changes["enabled"] = body.enabled
        if body.misfire_grace_seconds is not None:
            changes["misfire_grace_seconds"] = body.misfire_grace_seconds
        try:
            with write_transaction():
                Schedule.update(**changes).where(Schedule.id == row.id).execute()
                row = Schedule.get_by_id(row.id)
                queue_next(self.runtime.mailbox, row, recurrence.next_fire(trigger_of(row), now))
        except IntegrityError:
            raise name_taken(body.name or "") from None
        self.runtime.wake("dispatcher")
        resp.media = view(row, now)

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, schedule_id: int) -> None:
        row = get_owned(req, Schedule, schedule_id, "schedule")
        with write_transaction():
            row.delete_instance()
        resp.status = falcon.HTTP_204


class ScheduleRun:
    """Run now: one message at once, outside the schedule; the next runs are unchanged."""

    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response, schedule_id: int) -> None:
        row = get_owned(req, Schedule, schedule_id, "schedule")
        now = self.runtime.clock.now()
        try:
            key = f"schedule:{row.id}:run:{now:.3f}"
            outcome, message_id, detail = submit(self.runtime, row, key)
        except IngestUnavailable as exc:
            raise APIError(503, "not_ready", str(exc), headers={"Retry-After": "1"}) from None
        with write_transaction():
            record(row, now, outcome, message_id, {**(detail or {}), "manual": True}, now)
        if outcome != "sent":
            raise APIError(
                422,
                detail["code"],
                f"the schedule's message was refused: {detail['error']}; fix it with PATCH",
                [{"field": "message", "message": detail["error"], "value": None}],
            )
        resp.status = falcon.HTTP_202
        resp.media = {
            "schedule_id": row.id,
            "message_id": message_id,
            "fire_at": to_rfc3339(now),
            "next_runs": view(row, now)["next_runs"],
        }


ROUTES = [
    Route(
        "/api/v1/schedules",
        "schedules:Schedules",
        {
            "GET": Op(
                "messages:read", "List your recurring messages", query=("limit", "cursor", "user")
            ),
            "POST": Op("messages:send", "Create a recurring message", ScheduleIn, status=201),
        },
        tag="schedules",
    ),
    Route(
        "/api/v1/schedules/{schedule_id}",
        "schedules:Schedules",
        {
            "GET": Op("messages:read", "One recurring message with its next runs and past fires"),
            "PATCH": Op("messages:send", "Change a recurring message", SchedulePatch),
            "DELETE": Op("messages:send", "Delete a recurring message", status=204),
        },
        tag="schedules",
        suffix="item",
    ),
    Route(
        "/api/v1/schedules/{schedule_id}/run",
        "schedules:ScheduleRun",
        {"POST": Op("messages:send", "Send the schedule's message now", status=202)},
        tag="schedules",
    ),
]
