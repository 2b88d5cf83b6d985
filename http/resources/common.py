"""What every resource needs: reading a JSON body into a model, paging, time parameters.

Each helper raises APIError (400/422) with the field at fault, never a bare exception.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import falcon
from pydantic import BaseModel, ValidationError

from messagepusher.http.errors import APIError, unprocessable, validation_error

M = TypeVar("M", bound=BaseModel)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def read_json(req: falcon.Request) -> Any:
    """The parsed JSON body ({} when empty); 400 when it is not JSON, 413 past the size limit.

    Reads at most server.max_body_bytes + 1, so a chunked body without a length is capped too.
    """
    content_type = (req.content_type or "").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise APIError(
            415,
            "unsupported_media_type",
            f"send JSON with Content-Type: application/json, not {content_type}",
        )
    limit = req.context.runtime.settings.server.max_body_bytes
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise APIError(
            413, "too_large", f"the body is over the limit of {limit} bytes (server.max_body_bytes)"
        )
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def read_model(req: falcon.Request, model: type[M]) -> M:
    data = read_json(req)
    if not isinstance(data, dict):
        raise APIError(400, "malformed_json", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def page(req: falcon.Request) -> tuple[int, int | None]:
    """(limit, cursor id) from ?limit=&cursor=; items come newest first, below the cursor."""
    raw = req.get_param("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise unprocessable("limit", f"must be a whole number from 1 to {MAX_LIMIT}", raw)
        limit = int(raw)
    cursor = req.get_param("cursor")
    if not cursor:
        return limit, None
    try:
        return limit, int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except (ValueError, UnicodeDecodeError):
        raise unprocessable(
            "cursor", "is not a cursor this API gave out; pass next_cursor as it is", cursor
        ) from None


def next_cursor(rows: list[Any], limit: int) -> str | None:
    if len(rows) < limit:
        return None
    return base64.urlsafe_b64encode(str(rows[-1].id).encode()).decode().rstrip("=")


def enum_param(
    req: falcon.Request, name: str, allowed: tuple[str, ...], upper: bool = False
) -> str | None:
    """A query parameter that must be one of `allowed`; 422 naming the choices otherwise."""
    raw = req.get_param(name)
    if not raw:
        return None
    value = raw.upper() if upper else raw
    if value not in allowed:
        raise unprocessable(name, f"must be one of {', '.join(allowed)}", raw)
    return value


def time_param(req: falcon.Request, name: str) -> float | None:
    raw = req.get_param(name)
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise unprocessable(
            name, "must be an RFC 3339 time such as 2026-11-28T09:00:00Z", raw
        ) from None
    if parsed.tzinfo is None:
        raise unprocessable(name, "needs a time zone (Z or +08:00)", raw)
    return parsed.timestamp()


def listing(items: list[dict[str, Any]], cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": cursor}


def newest_page(
    req: falcon.Request, model: Any, view: Callable[[Any], dict[str, Any]], *conditions: Any
) -> dict[str, Any]:
    """The listing body of one page of `model` rows, newest first below ?cursor=.

    Every condition that is not None must hold. HTTP worker thread; raises APIError 422
    for a bad limit or cursor.
    """
    limit, cursor = page(req)
    query = model.select().order_by(model.id.desc()).limit(limit)
    for condition in conditions:
        if condition is not None:
            query = query.where(condition)
    if cursor is not None:
        query = query.where(model.id < cursor)
    rows = list(query)
    return listing([view(row) for row in rows], next_cursor(rows, limit))
