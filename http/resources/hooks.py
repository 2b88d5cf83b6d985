"""/api/v1/hooks and POST /hooks/{token}: incoming webhooks turned into messages by a template.

The secret URL is shown once and stored as a hash; a payload is rendered in the sandbox and
handed to ingest like any sent message.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal
from urllib.parse import parse_qsl

import falcon
from peewee import IntegrityError
from pydantic import Field, StrictInt, model_validator

from messagepusher.accounts.credentials import ROLE_SCOPES, hash_secret
from messagepusher.actors.ingest import Draft, IngestError, IngestUnavailable
from messagepusher.http.audit import note
from messagepusher.http.auth import Principal, get_owned, owner_filter
from messagepusher.http.errors import APIError, not_found, unprocessable
from messagepusher.http.resources.common import newest_page, read_json, read_model
from messagepusher.http.routes import PUBLIC, Op, Route
from messagepusher.http.schemas import Strict
from messagepusher.messages import hook_templates
from messagepusher.messages.hook_presets import PRESETS
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import Hook, User
from messagepusher.supervisor.timefmt import to_rfc3339

Preset = Literal["alertmanager", "grafana", "github", "gitea", "uptime_kuma"]


class HookTemplate(Strict):
    title: str = Field("", max_length=hook_templates.MAX_TEMPLATE_CHARS)
    body: str = Field("", max_length=hook_templates.MAX_TEMPLATE_CHARS)
    format: str | None = Field(
        None, max_length=200, description="renders to text, markdown or html"
    )
    priority: str | None = Field(None, max_length=200, description="renders to 1-5")
    url: str | None = Field(None, max_length=2000)
    channels: str | None = Field(
        None, max_length=2000, description="renders to channel names separated by commas"
    )

    @model_validator(mode="after")
    def _says_something(self) -> HookTemplate:
        if not (self.title or self.body):
            raise ValueError("a template needs a title or a body")
        return self

    def sources(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


class HookIn(Strict):
    name: str = Field(min_length=1, max_length=64)
    template: HookTemplate | None = None
    preset: Preset | None = None
    channels: list[str | StrictInt] | None = Field(None, max_length=50)
    priority: StrictInt | None = Field(None, ge=1, le=5)

    @model_validator(mode="after")
    def _one_source(self) -> HookIn:
        if (self.template is None) == (self.preset is None):
            raise ValueError(f"give exactly one of template or preset ({', '.join(PRESETS)})")
        return self


class HookPatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=64)
    template: HookTemplate | None = None
    preset: Preset | None = None
    channels: list[str | StrictInt] | None = Field(None, max_length=50)
    priority: StrictInt | None = Field(None, ge=1, le=5)


class PreviewIn(Strict):
    payload: Any = Field(None, description="the sample payload to render; default {}")
    template: HookTemplate | None = Field(
        None, description="try this template instead of the saved one"
    )


def template_of(hook: Hook) -> dict[str, str]:
    return PRESETS[hook.preset] if hook.preset else hook.template


def checked(template: HookTemplate) -> dict[str, str]:
    """The template's sources, or 422 naming the field and line that cannot be used."""
    sources = template.sources()
    try:
        hook_templates.check(sources)
    except hook_templates.TemplateProblem as exc:
        raise unprocessable(exc.field, exc.message) from None
    return sources


def view(h: Hook) -> dict[str, Any]:
    return {
        "id": h.id,
        "user_id": h.user_id,
        "name": h.name,
        "preset": h.preset,
        "template": h.template,
        "channels": h.channels,
        "priority": h.priority,
        "created_at": to_rfc3339(h.created_at),
        "updated_at": to_rfc3339(h.updated_at),
        "last_used_at": to_rfc3339(h.last_used_at),
        "last_error": h.last_error,
        "last_error_at": to_rfc3339(h.last_error_at),
    }


def name_taken(name: str) -> APIError:
    return APIError(409, "name_taken", f"you already have a hook named {name!r}")


class Hooks:
    """Every responder runs in an HTTP worker thread; errors are APIErrors (404, 409, 422)."""

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = newest_page(req, Hook, view, owner_filter(req, Hook))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_model(req, HookIn)
        template = checked(body.template) if body.template else None
        token = secrets.token_urlsafe(32)
        now = self.runtime.clock.now()
        try:
            with write_transaction():
                row = Hook.create(
                    user=req.context.principal.user_id,
                    name=body.name,
                    token_hash=hash_secret(token),
                    template=template,
                    preset=body.preset,
                    channels=body.channels,
                    priority=body.priority,
                    created_at=now,
                    updated_at=now,
                )
        except IntegrityError:
            raise name_taken(body.name) from None
        note(req, target=f"hook:{row.id}")
        base = self.runtime.settings.server.public_url.rstrip("/") or req.prefix
        resp.status = falcon.HTTP_201
        resp.media = {**view(row), "url": f"{base}/hooks/{token}"}

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, hook_id: int) -> None:
        resp.media = view(get_owned(req, Hook, hook_id, "hook"))

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, hook_id: int) -> None:
        row = get_owned(req, Hook, hook_id, "hook")
        body = read_model(req, HookPatch)
        if body.template is not None and body.preset is not None:
            raise unprocessable("template", "give template or preset, not both")
        changes: dict[str, Any] = {"updated_at": self.runtime.clock.now()}
        if body.template is not None:
            changes.update(template=checked(body.template), preset=None)
        if body.preset is not None:
            changes.update(preset=body.preset, template=None)
        if body.name is not None:
            changes["name"] = body.name
        for field in ("channels", "priority"):
            if field in body.model_fields_set:
                changes[field] = getattr(body, field)
        try:
            Hook.update(**changes).where(Hook.id == row.id).execute()
        except IntegrityError:
            raise name_taken(body.name or "") from None
        resp.media = view(Hook.get_by_id(row.id))

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, hook_id: int) -> None:
        row = get_owned(req, Hook, hook_id, "hook")
        row.delete_instance()
        resp.status = falcon.HTTP_204


class HookPreview:
    """Renders a sample payload with the hook's (or a trial) template; nothing is sent.

    HTTP worker thread; a bad trial template is a 422, a failing render an answer with `error`.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response, hook_id: int) -> None:
        row = get_owned(req, Hook, hook_id, "hook")
        body = read_model(req, PreviewIn)
        template = checked(body.template) if body.template else template_of(row)
        payload = {} if body.payload is None else body.payload
        fields, error = hook_templates.message_for(template, row.name, payload)
        resp.media = {"message": fields, "error": error}


class HookReceive:
    """POST /hooks/{token}: public; the token is the credential. Answers 202 after the commit.

    HTTP worker thread (the render too, bounded by its time budget); raises APIError 404 for
    an unknown token, 413/415 for a body it cannot read, 422/503 when ingest refuses.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        hook = Hook.get_or_none(Hook.token_hash == hash_secret(token))
        if hook is None:
            raise not_found("hook")
        note(req, target=f"hook:{hook.id}")
        owner = User.get_by_id(hook.user_id)
        if owner.disabled:
            raise not_found("hook")
        req.context.principal = Principal(
            owner.id, owner.username, owner.role, frozenset(ROLE_SCOPES[owner.role]), via="hook"
        )
        if self.runtime.throttle is not None:
            self.runtime.throttle(req)
        payload = read_payload(req)
        fields, error = hook_templates.message_for(template_of(hook), hook.name, payload)
        now = self.runtime.clock.now()
        draft = Draft(
            user_id=owner.id,
            title=fields.get("title", ""),
            body=fields.get("body", ""),
            format=fields.get("format", "text"),
            url=fields.get("url"),
            priority=fields.get("priority") or hook.priority or 3,
            channels=fields.get("channels") or hook.channels,
        )
        try:
            accepted = self.runtime.ingest.accept(draft)
        except IngestError as exc:
            raise APIError(
                exc.status,
                exc.code,
                f"the hook's message was refused: {exc.message}; fix the hook with PATCH "
                f"/api/v1/hooks/{hook.id}",
                [{"field": exc.field, "message": exc.message, "value": exc.value}],
            ) from None
        except IngestUnavailable as exc:
            raise APIError(503, "not_ready", str(exc), headers={"Retry-After": "1"}) from None
        changes: dict[str, Any] = {"last_used_at": now}
        if error:
            changes.update(last_error=error, last_error_at=now)
        Hook.update(**changes).where(Hook.id == hook.id).execute()
        resp.status = falcon.HTTP_202
        resp.media = {"id": accepted.id, "status": accepted.status, "template_error": error}


def read_payload(req: falcon.Request) -> Any:
    """The JSON or form body as the template's `payload`; 415 for anything else."""
    content_type = (req.content_type or "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        limit = req.context.runtime.settings.server.max_body_bytes
        raw = req.bounded_stream.read(limit + 1)
        if len(raw) > limit:
            raise APIError(
                413,
                "too_large",
                f"the body is over the limit of {limit} bytes (server.max_body_bytes)",
            )
        pairs = parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
        form: dict[str, Any] = {}
        for key, value in pairs:
            form.setdefault(key, []).append(value)
        return {k: v[0] if len(v) == 1 else v for k, v in form.items()}
    try:
        return read_json(req)
    except APIError as exc:
        if exc.code == "unsupported_media_type":
            raise APIError(
                415,
                "unsupported_media_type",
                f"send JSON (application/json) or a form (application/x-www-form-urlencoded), "
                f"not {content_type}",
            ) from None
        raise


ROUTES = [
    Route(
        "/api/v1/hooks",
        "hooks:Hooks",
        {
            "GET": Op(
                "messages:read", "List your incoming webhooks", query=("limit", "cursor", "user")
            ),
            "POST": Op(
                "messages:send",
                "Create an incoming webhook; the answer's url is shown once",
                HookIn,
                status=201,
            ),
        },
        tag="hooks",
    ),
    Route(
        "/api/v1/hooks/{hook_id}",
        "hooks:Hooks",
        {
            "GET": Op("messages:read", "One incoming webhook (without its secret URL)"),
            "PATCH": Op("messages:send", "Change an incoming webhook", HookPatch),
            "DELETE": Op("messages:send", "Delete an incoming webhook", status=204),
        },
        tag="hooks",
        suffix="item",
    ),
    Route(
        "/api/v1/hooks/{hook_id}/preview",
        "hooks:HookPreview",
        {"POST": Op("messages:read", "Render a sample payload without sending", PreviewIn)},
        tag="hooks",
    ),
    Route(
        "/hooks/{token}",
        "hooks:HookReceive",
        {
            "POST": Op(
                PUBLIC,
                "Receive a payload: JSON or a form; answers 202 with the message id",
                status=202,
            )
        },
        tag="hooks",
    ),
]
