"""Path and query parameters: their declared types, the one parser per type, their OpenAPI schemas.

Routes name their parameters; ParamsMiddleware checks every one before a responder runs.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

import falcon

from messagepusher.http.errors import APIError, unprocessable
from messagepusher.http.schemas import TIME_SCHEMA
from messagepusher.supervisor.timefmt import parse_rfc3339

MAX_ID = 2**63 - 1  # ids are 64-bit signed integers in SQLite and PostgreSQL
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAME = r"^[A-Za-z0-9_.-]{1,64}$"  # a username (supervisor/accounts allows exactly these)
_REF = r"^([1-9][0-9]{0,17}|[A-Za-z0-9_.-]*[A-Za-z_.-][A-Za-z0-9_.-]*)$"


class ParamError(ValueError):
    """A parameter value the declaration refuses; str() says what is allowed."""


@dataclass(frozen=True)
class Param:
    """One parameter's type. kind: integer (low..high, ASCII digits), enum, time, cursor, ref
    (a username or a user id), or text (no control characters, at most max_length)."""

    name: str
    kind: str = "text"
    low: int = 1
    high: int = MAX_ID
    choices: tuple[str, ...] = ()
    upper: bool = False  # enum values are matched after upper-casing (log levels)
    max_length: int = 256
    pattern: str = ""  # text: a regular expression the whole value must match
    description: str = ""

    def parse(self, raw: str) -> Any:
        """The typed value of `raw`; ParamError naming what is allowed. Pure."""
        if self.kind == "integer":
            return _integer(raw, self.low, self.high)
        if self.kind == "enum":
            value = raw.upper() if self.upper else raw
            if value not in self.choices:
                raise ParamError(f"must be one of {', '.join(self.choices)}")
            return value
        if self.kind == "time":
            try:
                return parse_rfc3339(raw)
            except ValueError as exc:
                raise ParamError(str(exc)) from None
        if self.kind == "cursor":
            try:
                decoded = base64.urlsafe_b64decode(raw.encode("ascii") + b"==").decode("ascii")
                return _integer(decoded, 1, MAX_ID)
            except (ValueError, UnicodeError):
                raise ParamError(
                    "is not a cursor this API gave out; pass next_cursor as it is"
                ) from None
        if self.kind == "ref" and not re.fullmatch(_NAME, raw):
            raise ParamError("must be a user id or a username (letters, digits, _ . -)")
        if self.kind == "ref" and raw.isdigit():
            _integer(raw, 1, MAX_ID)
        if len(raw) > self.max_length:
            raise ParamError(f"must be at most {self.max_length} characters")
        if _CONTROL.search(raw):
            raise ParamError("must not contain control characters such as NUL")
        if self.pattern and not re.fullmatch(self.pattern, raw):
            raise ParamError(f"must match {self.pattern}")
        return raw

    def schema(self) -> dict[str, Any]:
        """The JSON schema of exactly the values `parse` accepts (as far as a schema can say)."""
        if self.kind == "integer":
            return {"type": "integer", "minimum": self.low, "maximum": self.high}
        if self.kind == "enum":
            return {"type": "string", "enum": list(self.choices)}
        if self.kind == "time":
            return TIME_SCHEMA
        if self.kind == "cursor":
            return {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,28}$"}
        if self.kind == "ref":  # an id of up to 18 digits (all below MAX_ID), or a name
            return {"type": "string", "maxLength": 64, "pattern": _REF}
        return {
            "type": "string",
            "minLength": 1,
            "maxLength": self.max_length,
            "pattern": f"^{self.pattern}$" if self.pattern else "^[^\\x00-\\x1f\\x7f]*$",
        }

    def document(self, where: str) -> dict[str, Any]:
        """This parameter as an OpenAPI parameter object `in` path or query."""
        doc: dict[str, Any] = {
            "name": self.name,
            "in": where,
            "required": where == "path",
            "schema": self.schema(),
        }
        if self.description:
            doc["description"] = self.description
        return doc


def _integer(raw: str, low: int, high: int) -> int:
    # str.isdigit() is also true for "²" and "٣", which int() refuses: only ASCII digits count.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20 or not low <= int(raw) <= high:
        raise ParamError(f"must be a whole number from {low} to {high}")
    return int(raw)


def as_id(text: str | None) -> int | None:
    """`text` as a row id when it is one (ASCII digits, 1..MAX_ID), else None. Pure."""
    if text is None:
        return None
    try:
        return _integer(text, 1, MAX_ID)
    except ParamError:
        return None


# Query parameters that mean the same on every route: a route names them in Op.query.
COMMON: dict[str, Param] = {
    p.name: p
    for p in (
        Param("limit", "integer", 1, 200, description="page size, 1 to 200 (default 50)"),
        Param("cursor", "cursor", description="next_cursor of the previous page"),
        Param("user", "ref", description="admins: one user's rows, by id or username"),
        Param("since", "time", description="RFC 3339; from this time on"),
        Param("until", "time", description="RFC 3339; before this time"),
        Param("days", "integer", 1, 366, description="daily reports to include, 1 to 366"),
    )
}


def path_param(name: str) -> Param:
    """The declaration of a path parameter, by the naming rule: `*_id` is a row id."""
    if name.endswith("_id"):
        return Param(name, "integer")
    if name == "version":
        return Param(name, "integer", 0, MAX_ID, description="0 is the file alone")
    return Param(name, "text", max_length=128)


def query_param(declared: str | Param) -> Param:
    """A query declaration from Op.query: a Param, or the name of one in COMMON (else text)."""
    if isinstance(declared, Param):
        return declared
    return COMMON.get(declared, Param(declared))


def value(req: falcon.Request, declared: str | Param) -> Any:
    """The checked value of a query parameter (None when absent or empty); 422 when refused.

    HTTP worker thread. A name the route declares was checked by ParamsMiddleware already; an
    undeclared name is checked here by its COMMON declaration, a Param by itself.
    """
    param = query_param(declared)
    checked = getattr(req.context, "query", None)
    if isinstance(declared, str) and checked is not None and declared in checked:
        return checked[declared]
    raw = req.get_param(param.name)
    if not raw:
        return None
    try:
        return param.parse(raw)
    except ParamError as exc:
        raise unprocessable(param.name, str(exc), raw[:80]) from None


class ParamsMiddleware:
    """Checks every path and declared query parameter of a request before its responder runs.

    Path values reach the responder typed (ids as int); a refused path value is a 404 (no
    such object can exist), a refused query value a 422 naming it. HTTP worker thread.
    """

    def __init__(self, routes: list[Any]):
        self.ops = {
            (route.template, method): op for route in routes for method, op in route.ops.items()
        }

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        for name, raw in list(params.items()):
            try:
                params[name] = path_param(name).parse(raw)
            except ParamError as exc:
                raise APIError(
                    404,
                    "not_found",
                    f"{name} {raw[:80]!r} not found: it {exc}",
                    [{"field": name, "message": str(exc), "value": raw[:80]}],
                ) from None
        op = self.ops.get((req.uri_template, req.method))
        checked: dict[str, Any] = {}
        for declared in op.query if op is not None else ():
            param = query_param(declared)
            raw = req.get_param(param.name)
            if not raw:
                checked[param.name] = None
                continue
            try:
                checked[param.name] = param.parse(raw)
            except ParamError as exc:
                raise unprocessable(param.name, str(exc), raw[:80]) from None
        req.context.query = checked
