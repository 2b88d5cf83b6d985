"""/push/{username}: the API of songquanpeng/message-pusher, so its users switch by changing the host.

Reads its fields from the query, a form or JSON as it does, and answers {"success", "message", "uuid"} with its statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import falcon

from messagepusher.actors.channels import REGISTRY
from messagepusher.actors.ingest import Draft, IngestError, IngestUnavailable
from messagepusher.http.errors import APIError
from messagepusher.http.resources.common import check_values, read_json
from messagepusher.http.routes import PUBLIC, Op, Route
from messagepusher.supervisor.models import Channel

# Every field message-pusher reads (controller/message.go); `short` and `openid` are its
# ServerChan-compatible aliases of description and to.
FIELDS = (
    "title",
    "description",
    "desp",
    "short",
    "content",
    "url",
    "channel",
    "token",
    "to",
    "openid",
    "async",
    "render_mode",
)
DEFAULT_TITLE = "Message Pusher"  # message-pusher's title when none is given
TITLE_LIMIT = 256
BODY_LIMIT = 65_536
# message-pusher answers 200 with success false for everything but a missing or wrong token.
FAILED = 200


@dataclass(frozen=True)
class CompatMessage:
    """A push as message-pusher reads it, after its aliases are applied (pure)."""

    title: str
    description: str
    content: str
    url: str
    channel: str
    token: str
    to: list[str]

    @classmethod
    def of(cls, values: dict[str, str]) -> CompatMessage:
        """desp fills content and short fills description when they are empty, openid fills to,
        render_mode=code fences the content: as message-pusher's keepCompatible does."""
        content = values.get("content") or values.get("desp") or ""
        if values.get("render_mode") == "code" and content:
            content = f"```\n{content}\n```"
        to = values.get("to") or values.get("openid") or ""
        return cls(
            title=values.get("title") or "",
            description=values.get("description") or values.get("short") or "",
            content=content,
            url=values.get("url") or "",
            channel=values.get("channel") or "",
            token=values.get("token") or "",
            to=[part.strip() for part in to.split("|") if part.strip()],
        )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _multipart(req: falcon.Request) -> dict[str, str]:
    """The text fields of a multipart form (curl -F); file parts are skipped. The body's size
    was checked against server.max_body_bytes before this resource ran."""
    try:
        return {
            part.name: part.get_text() or ""
            for part in req.get_media()
            if part.name in FIELDS and not part.filename
        }
    except (falcon.HTTPError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "description", None) or str(exc)
        raise APIError(
            FAILED, "malformed_body", f"the multipart form cannot be read: {reason}"
        ) from None


def _body_fields(req: falcon.Request) -> dict[str, str]:
    """The fields of a POST body: JSON when Content-Type says so, else a form, urlencoded or
    multipart (as message-pusher)."""
    content_type = (req.content_type or "").lower()
    if "application/json" in content_type:
        try:
            body = read_json(req)
        except APIError as exc:
            if exc.code in ("too_large", "too_deep"):  # limits keep their 4xx, as on every route
                raise
            raise APIError(
                FAILED, "malformed_json", f"the body is not valid JSON: {exc.message}"
            ) from None
        if not isinstance(body, dict):
            raise APIError(FAILED, "malformed_json", "the body must be a JSON object")
    elif content_type.startswith("multipart/form-data"):
        body = _multipart(req)
    else:
        limit = req.context.runtime.settings.server.max_body_bytes
        raw = req.bounded_stream.read(limit + 1)
        if len(raw) > limit:
            raise APIError(
                413,
                "too_large",
                f"the body is over the limit of {limit} bytes (server.max_body_bytes)",
            )
        body = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    for name, value in body.items():
        if name in FIELDS and isinstance(value, dict | list):
            raise APIError(
                FAILED,
                "invalid_field",
                f"{name}: must be a string (to: names separated by |), not a JSON "
                f"{'object' if isinstance(value, dict) else 'array'}",
                [{"field": name, "message": "must be a string", "value": None}],
            )
    fields = {k: _text(v) for k, v in body.items() if k in FIELDS}
    return check_values({k: v for k, v in fields.items() if v is not None})


def _fields(req: falcon.Request) -> dict[str, str]:
    """GET reads the query; POST reads the body, and the query only for a token it lacks."""
    query = check_values(
        {k: v for k, v in req.params.items() if k in FIELDS and isinstance(v, str)}
    )
    if req.method != "POST":
        return query
    values = _body_fields(req)
    if not values:
        raise APIError(
            FAILED,
            "empty_body",
            "the body is empty: send a form, or JSON with Content-Type: application/json",
        )
    if not values.get("token") and query.get("token"):
        values["token"] = query["token"]
    return values


def header_token(req: falcon.Request) -> str:
    """The token of `Authorization: Bearer <token>` or of a bare `Authorization: <token>`."""
    header = (req.get_header("Authorization") or "").strip()
    return header.removeprefix("Bearer ").strip()


def recipient_notes(user_id: int, channel: str, to: list[str]) -> str:
    """Which of the push's channels ignore `to` (they do not address recipients), as one sentence."""
    if not to:
        return ""
    query = Channel.select(Channel.name, Channel.type).where(Channel.user == user_id)
    query = query.where(Channel.name == channel) if channel else query.where(Channel.is_default)
    ignored = [
        f"{c.name} ({c.type})"
        for c in query
        if not getattr(REGISTRY.get(c.type), "addresses_recipients", False)
    ]
    if not ignored:
        return ""
    addressing = sorted(n for n, cls in REGISTRY.items() if cls.addresses_recipients)
    return (
        f"to was ignored by {', '.join(ignored)}: only channels of type "
        f"{' or '.join(addressing)} address recipients"
    )


class Push:
    """Authenticates with `token` (an API key of that user with messages:send) from the body,
    the query or the Authorization header, with or without "Bearer ".

    The route is public in the table because the credential may arrive in the body;
    this resource applies the same key check and scope rule as the middleware.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        """HTTP worker thread; answers every failure as {"success": false, …}, never raises."""
        self._push(req, resp, username)

    def on_post(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        """HTTP worker thread; answers every failure as {"success": false, …}, never raises."""
        self._push(req, resp, username)

    def _push(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        try:
            message_id, note = self._accept(req, username)
        except APIError as exc:
            resp.status = exc.status
            if exc.headers:
                resp.set_headers(exc.headers)
            # message-pusher's clients read success and message; ours also get the error shape.
            resp.media = {"success": False, "message": exc.message, "uuid": "", **exc.to_dict()}
            return
        resp.media = {"success": True, "message": note, "uuid": str(message_id)}

    def _accept(self, req: falcon.Request, username: str) -> tuple[int, str]:
        push = CompatMessage.of(_fields(req))
        token = push.token or header_token(req)
        if not token:
            raise APIError(
                401,
                "unauthorized",
                "no token: pass token=<api key>, Authorization: Bearer <api key> "
                "or Authorization: <api key>",
            )
        principal = self.runtime.key_authenticator.authenticate(token)
        if principal.username != username:
            raise APIError(401, "unauthorized", f"this token does not belong to {username!r}")
        if "messages:send" not in principal.scopes:
            raise APIError(403, "missing_scope", "this token lacks the scope 'messages:send'")
        req.context.principal = principal
        throttle = getattr(self.runtime, "throttle", None)
        if throttle is not None:
            throttle(req)
        if push.url and not push.url.startswith(("http://", "https://")):
            raise APIError(
                FAILED,
                "invalid_field",
                f"url: must be an http:// or https:// URL, not {push.url[:80]!r}",
            )
        draft = Draft(
            user_id=principal.user_id,
            title=(push.title or DEFAULT_TITLE)[:TITLE_LIMIT],
            body=(push.content or push.description)[:BODY_LIMIT],
            format="markdown" if push.content else "text",
            url=push.url or None,
            channels=[push.channel] if push.channel else None,
            recipients=push.to or None,
        )
        try:
            accepted = self.runtime.ingest.accept(draft)
        except IngestError as exc:
            raise APIError(FAILED, exc.code, exc.message) from None
        except IngestUnavailable as exc:
            raise APIError(503, "not_ready", str(exc), headers={"Retry-After": "1"}) from None
        return accepted.id, recipient_notes(principal.user_id, push.channel, push.to)


ROUTES = [
    Route(
        "/push/{username}",
        "compat:Push",
        {
            "GET": Op(PUBLIC, "message-pusher compatible send (fields in the query)"),
            "POST": Op(
                PUBLIC, "message-pusher compatible send (form or JSON; token also in the query)"
            ),
        },
        tag="compat",
    ),
]
