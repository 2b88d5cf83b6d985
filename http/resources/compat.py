"""/push/{username}: the API of songquanpeng/message-pusher, so its users switch by changing the host.

Takes title, description, content, channel, token, url from the query, a form or JSON,
and answers {"success", "message", "uuid"}.
"""

from __future__ import annotations

import falcon

from messagepusher.actors.ingest import Draft, IngestError, IngestUnavailable
from messagepusher.http.errors import APIError
from messagepusher.http.resources.common import check_values, read_json
from messagepusher.http.routes import PUBLIC, Op, Route

FIELDS = ("title", "description", "content", "channel", "token", "url")


def _fields(req: falcon.Request) -> dict[str, str]:
    """The compat fields from the query string, then a form or JSON body (the body wins)."""
    values = check_values(
        {k: v for k, v in req.params.items() if k in FIELDS and isinstance(v, str)}
    )
    if req.method != "POST":
        return values
    body = read_json(req, forms=True)
    if not isinstance(body, dict):
        raise APIError(400, "malformed_body", "the body must be a JSON object or a form")
    values.update({k: str(v) for k, v in body.items() if k in FIELDS and v is not None})
    return values


class Push:
    """Authenticates with `token` (an API key of that user with messages:send) or a Bearer header.

    The route is public in the table because the credential may arrive in the body;
    this resource applies the same key check and scope rule as the middleware.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        self._push(req, resp, username)

    def on_post(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        self._push(req, resp, username)

    def _push(self, req: falcon.Request, resp: falcon.Response, username: str) -> None:
        try:
            message_id = self._accept(req, username)
        except APIError as exc:
            resp.status = exc.status
            if exc.headers:
                resp.set_headers(exc.headers)
            resp.media = {"success": False, "message": exc.message, "uuid": ""}
            return
        resp.media = {"success": True, "message": "ok", "uuid": str(message_id)}

    def _accept(self, req: falcon.Request, username: str) -> int:
        fields = _fields(req)
        header = req.get_header("Authorization") or ""
        token = fields.get("token") or header.partition(" ")[2].strip()
        if not token:
            raise APIError(
                401,
                "unauthorized",
                "no token: pass token=<api key> or Authorization: Bearer <api key>",
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
        title = fields.get("title", "")[:256]
        content, description = fields.get("content", ""), fields.get("description", "")
        body = content or description
        if not (title or body):
            raise APIError(422, "invalid_field", "title: give a title, a description or a content")
        draft = Draft(
            user_id=principal.user_id,
            title=title,
            body=body[:65_536],
            format="markdown" if content else "text",
            url=fields.get("url") or None,
            channels=[fields["channel"]] if fields.get("channel") else None,
        )
        if draft.url and not draft.url.startswith(("http://", "https://")):
            raise APIError(422, "invalid_field", "url: must be an http:// or https:// URL")
        try:
            return self.runtime.ingest.accept(draft).id
        except IngestError as exc:
            raise APIError(exc.status, exc.code, exc.message) from None
        except IngestUnavailable as exc:
            raise APIError(503, "not_ready", str(exc), headers={"Retry-After": "1"}) from None


ROUTES = [
    Route(
        "/push/{username}",
        "compat:Push",
        {
            "GET": Op(PUBLIC, "message-pusher compatible send (token in the query)"),
            "POST": Op(PUBLIC, "message-pusher compatible send (query, form or JSON)"),
        },
        tag="compat",
    ),
]
