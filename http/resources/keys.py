"""API keys over HTTP: create (the secret shown once), list, rename, re-scope, expire, disable, delete.

Permissions come from ROUTES below; a key never gets a scope its maker lacks, and the admin scope needs X-Confirm.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import falcon
from pydantic import Field, StrictBool

from messagepusher.accounts import users as accounts
from messagepusher.accounts.credentials import ALL_SCOPES, ROLE_SCOPES
from messagepusher.accounts.users import AccountError
from messagepusher.http import params
from messagepusher.http.audit import note
from messagepusher.http.auth import Principal, get_owned, owner_filter
from messagepusher.http.confirm import require_confirmation
from messagepusher.http.errors import APIError, not_found, unprocessable
from messagepusher.http.resources.common import newest_page, read_model
from messagepusher.http.resources.profile import account_error
from messagepusher.http.routes import Op, Route
from messagepusher.http.schemas import ApiTime, Strict
from messagepusher.supervisor.models import ApiKey, User
from messagepusher.supervisor.timefmt import to_rfc3339


class KeyIn(Strict):
    name: str = Field("", max_length=64)
    scopes: list[str] | None = Field(
        None,
        max_length=len(ALL_SCOPES),
        description=f"any of {', '.join(ALL_SCOPES)}; default: all your role allows",
    )
    expires_at: ApiTime | None = Field(
        None,
        description="RFC 3339 with a time zone, at most limits.max_key_days ahead; default: never",
    )


class KeyPatch(Strict):
    name: str | None = Field(None, max_length=64)
    scopes: list[str] | None = Field(None, max_length=len(ALL_SCOPES))
    expires_at: ApiTime | None = Field(
        None,
        description="null removes the expiry; a past time expires it now; at most "
        "limits.max_key_days ahead",
    )
    enabled: StrictBool | None = None


def key_view(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "user_id": k.user_id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": k.scopes,
        "enabled": k.enabled,
        "created_at": to_rfc3339(k.created_at),
        "expires_at": to_rfc3339(k.expires_at),
        "last_used_at": to_rfc3339(k.last_used_at),
    }


def _expiry(req: falcon.Request, value: datetime | None, allow_past: bool) -> float | None:
    """Epoch seconds of a key's expiry; 422 when past (unless allowed) or too far ahead."""
    if value is None:
        return None
    ts = value.timestamp()
    now = req.context.runtime.clock.now()
    if not allow_past and ts <= now:
        raise unprocessable("expires_at", "must be in the future", value.isoformat())
    days = req.context.runtime.settings.limits.max_key_days
    if ts > now + days * 86400:
        raise unprocessable(
            "expires_at",
            f"must be at most {days} days ahead (limits.max_key_days)",
            value.isoformat(),
        )
    return ts


def _key_owner(req: falcon.Request) -> User:
    """Whose key is being made: the caller, or for an admin the user named by ?user=."""
    principal: Principal = req.context.principal
    wanted = params.value(req, "user")
    if not wanted:
        return User.get_by_id(principal.user_id)
    if not principal.is_admin:
        raise APIError(
            403,
            "forbidden",
            "user: only an admin may create a key for another user; leave ?user= out to "
            "create one for yourself",
            [{"field": "user", "message": "admins only", "value": wanted}],
        )
    user = accounts.find_user(wanted)
    if user is None:
        raise not_found("user")
    return user


def _grantable(req: falcon.Request, owner: User, requested: list[str] | None) -> list[str]:
    """The scopes a new or changed key gets: within the owner's role and the caller's own scopes."""
    principal: Principal = req.context.principal
    if requested is None:
        return sorted(s for s in ROLE_SCOPES[owner.role] if s in principal.scopes)
    try:
        allowed = accounts.validate_scopes(requested, owner.role)
    except AccountError as exc:
        raise account_error(exc) from None
    _require_held(req, allowed)
    return allowed


def _require_held(req: falcon.Request, scopes: list[str]) -> None:
    """A caller may only grant, or change a key holding, scopes it holds itself: no key mints a stronger one."""
    lacking = [s for s in scopes if s not in req.context.principal.scopes]
    if lacking:
        raise APIError(
            403,
            "scope_not_held",
            f"scopes: a key can only grant or change scopes the caller holds; "
            f"yours lack {lacking[0]!r}",
            [{"field": "scopes", "message": "not held by the caller", "value": lacking[0]}],
        )


class Keys:
    """/api/v1/keys and /api/v1/keys/{key_id}: the API key life cycle.

    HTTP worker thread; raises APIError 403 (X-Confirm, scope not held), 404 or 422.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = newest_page(req, ApiKey, key_view, owner_filter(req, ApiKey))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_model(req, KeyIn)
        owner = _key_owner(req)
        scopes = _grantable(req, owner, body.scopes)
        expires_at = _expiry(req, body.expires_at, allow_past=False)
        if "admin" in scopes:
            require_confirmation(req, "creating a key with the admin scope")
        row, plaintext = accounts.create_key(
            owner, name=body.name, scopes=scopes, expires_at=expires_at
        )
        note(req, target=row.id, owner=owner.id, scopes=scopes)
        resp.status = falcon.HTTP_201
        resp.media = {**key_view(row), "key": plaintext}

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, key_id: int) -> None:
        resp.media = key_view(get_owned(req, ApiKey, key_id, "key"))

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, key_id: int) -> None:
        row = get_owned(req, ApiKey, key_id, "key")
        body = read_model(req, KeyPatch)
        changes: dict[str, Any] = {}
        if body.name is not None:
            changes["name"] = body.name
        owner = User.get_by_id(row.user_id)
        if body.scopes is not None:
            changes["scopes"] = _grantable(req, owner, body.scopes)
        else:
            _require_held(req, [s for s in row.scopes if s in ROLE_SCOPES[owner.role]])
        if "expires_at" in body.model_fields_set:
            changes["expires_at"] = _expiry(req, body.expires_at, allow_past=True)
        if body.enabled is not None:
            changes["enabled"] = body.enabled
        was_admin = row.enabled and "admin" in row.scopes
        will_be_admin = changes.get("enabled", row.enabled) and "admin" in changes.get(
            "scopes", row.scopes
        )
        if will_be_admin and not was_admin:
            require_confirmation(req, "giving a key the admin scope")
        if changes:
            ApiKey.update(**changes).where(ApiKey.id == row.id).execute()
        self.runtime.key_authenticator.forget(row.id)
        note(req, changed=sorted(body.model_fields_set))
        resp.media = key_view(ApiKey.get_by_id(row.id))

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, key_id: int) -> None:
        row = get_owned(req, ApiKey, key_id, "key")
        ApiKey.delete().where(ApiKey.id == row.id).execute()
        self.runtime.key_authenticator.forget(row.id)
        resp.status = falcon.HTTP_204


ROUTES = [
    Route(
        "/api/v1/keys",
        "keys:Keys",
        {
            "GET": Op(
                "keys:manage",
                "List API keys (never their secrets)",
                query=("limit", "cursor", "user"),
            ),
            "POST": Op(
                "keys:manage",
                "Create an API key; the secret is in this answer only (admin scope needs "
                "X-Confirm)",
                KeyIn,
                status=201,
                query=("user",),
            ),
        },
        tag="keys",
    ),
    Route(
        "/api/v1/keys/{key_id}",
        "keys:Keys",
        {
            "GET": Op("keys:manage", "One API key (never its secret)"),
            "PATCH": Op(
                "keys:manage", "Rename, re-scope, set expiry, disable or enable a key", KeyPatch
            ),
            "DELETE": Op("keys:manage", "Delete an API key", status=204),
        },
        tag="keys",
        suffix="item",
    ),
]
