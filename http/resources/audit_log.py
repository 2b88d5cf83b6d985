"""The audit log over HTTP: everyone's rows for admins, one's own for everyone, newest first.

Permissions come from ROUTES below; the rows are written by http/audit.py.
"""

from __future__ import annotations

from typing import Any

import falcon

from messagepusher.accounts import users as accounts
from messagepusher.http import params
from messagepusher.http.audit import OUTCOMES
from messagepusher.http.params import Param
from messagepusher.http.resources.common import newest_page
from messagepusher.http.routes import AUTHENTICATED, Op, Route
from messagepusher.supervisor.models import AuditLog
from messagepusher.supervisor.timefmt import to_rfc3339


def audit_view(a: AuditLog) -> dict[str, Any]:
    return {
        "id": a.id,
        "at": to_rfc3339(a.at),
        "user_id": a.user_id,
        "username": a.username,
        "role": a.role,
        "action": a.action,
        "target": a.target,
        "outcome": a.outcome,
        "address": a.address,
        "detail": a.detail,
    }


def _audit_page(req: falcon.Request, whose: Any) -> dict[str, Any]:
    """One page of audit rows matching the query's filters and `whose` (None: everyone's)."""
    action, target = params.value(req, "action"), params.value(req, "target")
    outcome = params.value(req, "outcome")
    since, until = params.value(req, "since"), params.value(req, "until")
    contains = params.value(req, "contains")
    return newest_page(
        req,
        AuditLog,
        audit_view,
        whose,
        AuditLog.action == action if action else None,
        AuditLog.action.contains(contains) if contains else None,
        AuditLog.target == target if target else None,
        AuditLog.outcome == outcome if outcome else None,
        AuditLog.at >= since if since is not None else None,
        AuditLog.at < until if until is not None else None,
    )


class AdminAudit:
    """/api/v1/admin/audit: everyone's audit rows, newest first, filtered by user, action, target, outcome, time.

    HTTP worker thread; raises APIError 422 for a bad filter.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        wanted = params.value(req, "user")
        whose = None
        if wanted:
            user = accounts.find_user(wanted)
            whose = (AuditLog.user_id == user.id) if user else (AuditLog.username == wanted)
        resp.media = _audit_page(req, whose)


class MeAudit:
    """/api/v1/me/audit: the caller's own audit rows, newest first. HTTP worker thread; 422 for a bad filter."""

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = _audit_page(req, AuditLog.user_id == req.context.principal.user_id)


AUDIT_FILTERS = (
    Param("action", max_length=64),
    Param("contains", max_length=64, description="actions containing this text"),
    Param("target", max_length=128),
    Param("outcome", "enum", choices=OUTCOMES),
    "since",
    "until",
    "limit",
    "cursor",
)


ROUTES = [
    Route(
        "/api/v1/me/audit",
        "audit_log:MeAudit",
        {
            "GET": Op(AUTHENTICATED, "Your audit log entries, newest first", query=AUDIT_FILTERS),
        },
        tag="me",
    ),
    Route(
        "/api/v1/admin/audit",
        "audit_log:AdminAudit",
        {
            "GET": Op(
                "admin",
                "The audit log, newest first",
                audit="read audit log",
                query=("user", *AUDIT_FILTERS),
            ),
        },
        tag="admin",
    ),
]
