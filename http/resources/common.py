"""What every resource needs: the one reader of request bodies, paging, typed query values.

Each helper raises APIError (400/413/415/422) with the field at fault, never a bare exception.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import falcon
from pydantic import BaseModel, ValidationError

from messagepusher.http import params
from messagepusher.http.errors import APIError, unprocessable, validation_error

M = TypeVar("M", bound=BaseModel)

DEFAULT_LIMIT = 50
MAX_DEPTH = 64  # arrays and objects nested deeper are refused before parsing
MAX_INTEGER = 2**63 - 1  # what the database can store; JSON numbers beyond are refused
FORM = "application/x-www-form-urlencoded"
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


class _Refused:
    """A number json.loads read but the API does not take; the walk names its field."""

    def __init__(self, text: str):
        self.text = text


def _integer(text: str) -> Any:
    if len(text) > 20:
        return _Refused(text)
    number = int(text)
    return number if -MAX_INTEGER - 1 <= number <= MAX_INTEGER else _Refused(text)


def _float(text: str) -> Any:
    number = float(text)
    return number if abs(number) != float("inf") else _Refused(text)


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (strings skipped). Pure, no recursion."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw))
    steps = (1 if b in b"[{" else -1 for b in brackets)
    return max(accumulate(steps, initial=0))


def check_values(value: Any, field: str = "") -> Any:
    """`value` unchanged when every string and key is storable text and every number fits.

    Raises APIError 422 naming the field (a.b[2]) that holds a NUL, a lone surrogate or an
    out-of-range number. Pure; recursion is bounded by MAX_DEPTH, checked before parsing.
    """
    if isinstance(value, str):
        bad = _BAD_CHARACTER.search(value)
        if bad:
            what = "NUL" if bad.group() == "\x00" else f"a lone surrogate U+{ord(bad.group()):04X}"
            raise unprocessable(
                field or "body",
                f"contains {what}; send text without it",
                value[:80].encode("unicode_escape").decode("ascii"),
            )
    elif isinstance(value, _Refused):
        raise unprocessable(
            field or "body",
            f"is out of range; numbers must be finite and integers within ±{MAX_INTEGER}",
            value.text[:80],
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            check_values(key, f"{field} (a key)" if field else "a key")
            check_values(item, f"{field}.{key}" if field else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_values(item, f"{field}[{index}]")
    return value


def parse_body(raw: bytes, content_type: str, forms: bool = False) -> Any:
    """The checked value of a request body: JSON, or with `forms` a URL-encoded form (a dict
    of strings) unless the type is JSON or, without a type, the body starts with "{".
    {} for an empty body. Pure; raises APIError 400/415/422."""
    json_type = content_type == "application/json" or content_type.endswith("+json")
    sniffed_json = not content_type and raw.lstrip()[:1] == b"{"
    if forms and not json_type and not sniffed_json:
        try:
            text = raw.decode("utf-8")
            return check_values(dict(parse_qsl(text, keep_blank_values=True, errors="strict")))
        except UnicodeDecodeError:
            raise APIError(400, "malformed_body", "the form is not UTF-8 text") from None
    if content_type and not json_type:
        raise APIError(
            415,
            "unsupported_media_type",
            f"send JSON with Content-Type: application/json, not {content_type}",
        )
    if not raw.strip():
        return {}
    # Counting brackets first is cheap and spares the scan for almost every body.
    depth = nesting_depth(raw) if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH else 0
    if depth > MAX_DEPTH:
        raise APIError(
            400,
            "too_deep",
            f"the body nests arrays and objects {depth} deep; the limit is {MAX_DEPTH}",
            {"limit": MAX_DEPTH, "depth": depth},
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(400, "malformed_json", f"the body is not UTF-8 text: {exc}") from None
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_float, parse_constant=_constant)
    except ValueError as exc:
        raise APIError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    return check_values(value)


def read_json(req: falcon.Request, forms: bool = False, required: bool = False) -> Any:
    """The parsed, checked body ({} when empty): the one way every resource reads a body.

    HTTP worker thread. Reads at most server.max_body_bytes + 1, so a chunked body without
    a length is capped too. Raises APIError: 413 past the size limit, 415 for another content
    type, 400 for undecodable text, bad JSON or nesting deeper than MAX_DEPTH, 422 naming the
    field that holds a NUL, a lone surrogate or an out-of-range number; with `required`,
    400 `body_required` for an empty body (the OpenAPI document marks such bodies required).
    """
    content_type = (req.content_type or "").split(";")[0].strip().lower()
    limit = req.context.runtime.settings.server.max_body_bytes
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise APIError(
            413, "too_large", f"the body is over the limit of {limit} bytes (server.max_body_bytes)"
        )
    if required and not raw.strip():
        raise APIError(
            400, "body_required", "this request needs a JSON object body; see /openapi.json"
        )
    return parse_body(raw, content_type, forms)


def read_object(req: falcon.Request) -> dict[str, Any]:
    """A required JSON object body; 400 when it is missing or not an object."""
    data = read_json(req, required=True)
    if not isinstance(data, dict):
        raise APIError(400, "malformed_json", "the body must be a JSON object")
    return data


def read_model(req: falcon.Request, model: type[M]) -> M:
    """The required JSON object body validated by `model`; 400 or 422 naming the field."""
    try:
        return model.model_validate(read_object(req))
    except ValidationError as exc:
        raise validation_error(exc) from None


def page(req: falcon.Request) -> tuple[int, int | None]:
    """(limit, cursor id) from ?limit=&cursor=; items come newest first, below the cursor."""
    return params.value(req, "limit") or DEFAULT_LIMIT, params.value(req, "cursor")


def next_cursor(rows: list[Any], limit: int) -> str | None:
    if len(rows) < limit:
        return None
    return base64.urlsafe_b64encode(str(rows[-1].id).encode()).decode().rstrip("=")


def enum_param(
    req: falcon.Request, name: str, allowed: tuple[str, ...], upper: bool = False
) -> str | None:
    """A query parameter that must be one of `allowed`; 422 naming the choices otherwise."""
    return params.value(req, params.Param(name, "enum", choices=allowed, upper=upper))


def time_param(req: falcon.Request, name: str) -> float | None:
    """An RFC 3339 query parameter as epoch seconds; 422 unless it lies in the time window."""
    return params.value(req, params.Param(name, "time"))


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
