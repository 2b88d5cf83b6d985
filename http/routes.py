"""The route table: every URL, its resource, and each method's permission and schema.

The app, the permission check and the OpenAPI document are all built from this one list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PUBLIC = "public"  # no credentials
AUTHENTICATED = "authenticated"  # any valid credential, no particular scope


@dataclass(frozen=True)
class Op:
    permission: str  # a scope such as "messages:send", or PUBLIC / AUTHENTICATED
    summary: str
    request: type | None = None  # pydantic model of the JSON body
    status: int = 200
    sensitive: bool = False  # needs X-Confirm (second verification)
    audit: str = ""  # audit action name for a sensitive read; mutations are audited anyway
    # Query parameters: a name from params.COMMON, or a params.Param. ParamsMiddleware checks
    # them and the OpenAPI document declares them, so declaring is all a route has to do.
    query: tuple[Any, ...] = ()
    html: bool = False  # a page for people: it answers text/html, its 404 too


@dataclass(frozen=True)
class Route:
    template: str
    resource: str  # "module:Class" under messagepusher.http.resources
    ops: dict[str, Op] = field(default_factory=dict)
    tag: str = ""
    suffix: str | None = None  # Falcon responder suffix: on_get_<suffix> for item URLs


def all_routes() -> list[Route]:
    """Every route of every resource module; each module exports ROUTES."""
    from messagepusher.http.resources import (
        accounts,
        channels,
        compat,
        docs,
        health,
        hooks,
        messages,
        nodes,
        operations,
        public,
        schedules,
        stats,
        streams,
        tasks,
        ui,
    )

    routes: list[Route] = []
    for module in (
        health,
        docs,
        ui,
        messages,
        tasks,
        schedules,
        hooks,
        channels,
        accounts,
        operations,
        nodes,
        compat,
        streams,
        public,
        stats,
    ):
        routes.extend(module.ROUTES)
    return routes


def permission_for(routes: list[Route], template: str, method: str) -> Op | None:
    for route in routes:
        if route.template == template:
            return route.ops.get(method)
    return None
