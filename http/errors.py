"""The one error shape of the API: {"error": {"code", "message", "details"}}.

Every exception that reaches Falcon is turned into it; a bug is a logged 500 without a trace.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon
from pydantic import ValidationError

log = logging.getLogger(__name__)


class APIError(falcon.HTTPError):
    """An error with our code and message; raise it from resources and middleware."""

    def __init__(
        self,
        status: str | int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(status, headers=headers)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self, obj_type=dict):
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def not_found(what: str = "resource") -> APIError:
    return APIError(404, "not_found", f"{what} not found")


def unprocessable(field: str, message: str, value: Any = None) -> APIError:
    return APIError(
        422,
        "invalid_field",
        f"{field}: {message}",
        [{"field": field, "message": message, "value": value}],
    )


def validation_error(exc: ValidationError) -> APIError:
    details = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        if isinstance(value, str) and len(value) > 80:
            value = value[:80] + "…"
        elif not isinstance(value, str | int | float | bool | type(None)):
            value = None
        details.append({"field": field, "message": msg, "value": value})
    first = details[0]
    return APIError(422, "invalid_field", f"{first['field']}: {first['message']}", details)


_GENERIC = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_field",
    429: "rate_limited",
    503: "not_ready",
}


def _http_error_handler(
    req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params
) -> None:
    if isinstance(ex, APIError):
        body = ex.to_dict()
    else:
        code = _GENERIC.get(ex.status_code, "error")
        message = ex.title or code
        if ex.description:
            message = f"{message}: {ex.description}"
        body = {"error": {"code": code, "message": message, "details": None}}
    resp.status = ex.status
    if ex.headers:
        resp.set_headers(ex.headers)
    resp.media = body


def _unexpected_handler(req: falcon.Request, resp: falcon.Response, ex: Exception, params) -> None:
    if isinstance(ex, falcon.HTTPError):
        return _http_error_handler(req, resp, ex, params)
    if isinstance(ex, ValidationError):
        return _http_error_handler(req, resp, validation_error(ex), params)
    # The route's template, not the path: a path can carry a secret (POST /hooks/{token}).
    log.exception("unhandled error in %s %s", req.method, req.uri_template or "(no route)")
    resp.status = falcon.HTTP_500
    resp.media = {
        "error": {
            "code": "internal",
            "message": "internal error; it has been logged",
            "details": None,
        }
    }


def install(app: falcon.App) -> None:
    app.add_error_handler(Exception, _unexpected_handler)
    app.add_error_handler(falcon.HTTPError, _http_error_handler)
