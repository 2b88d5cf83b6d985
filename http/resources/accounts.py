"""Accounts over HTTP: users (admin), the caller's profile and TOTP, web sessions, API keys, the audit log.

Permissions come from ROUTES below; body-dependent second verification uses the shared confirm helper.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

import falcon
from pydantic import Field, StrictBool, field_validator

from messagepusher.http import params
from messagepusher.http.audit import OUTCOMES, note
from messagepusher.http.auth import (
    SESSION_COOKIE,
    Principal,
    get_owned,
    login_locked,
    owner_filter,
    session_token,
)
from messagepusher.http.confirm import check_secret, require_confirmation, use_totp_code
from messagepusher.http.errors import APIError, not_found, unprocessable
from messagepusher.http.params import Param
from messagepusher.http.resources.common import newest_page, read_model
from messagepusher.http.routes import AUTHENTICATED, PUBLIC, Op, Route
from messagepusher.http.schemas import ApiTime, Strict
from messagepusher.supervisor import accounts
from messagepusher.supervisor.accounts import AccountError
from messagepusher.supervisor.credentials import (
    ALL_SCOPES,
    ROLE_SCOPES,
    csrf_for,
    dummy_password_check,
    new_totp_secret,
    totp_uri,
    verify_password,
)
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import ApiKey, AuditLog, User, WebSession
from messagepusher.supervisor.timefmt import to_rfc3339

# A failed login waits slowdown_seconds per recent failure, but never longer than this,
# so that an attacker cannot pin every HTTP worker thread for long.
MAX_LOGIN_DELAY = 5.0


# --- request bodies ------------------------------------------------------------------------
# Password fields carry no pydantic constraints: a validation error would echo the value.


def _email(value: str | None) -> str | None:
    if value and ("@" not in value or value.startswith("@") or value.endswith("@")):
        raise ValueError("must be an e-mail address such as ops@example.com, or empty")
    return value


class PreferencesIn(Strict):
    timezone: str | None = Field(
        None, max_length=64, description="IANA time zone, e.g. Asia/Shanghai"
    )
    language: Literal["zh-CN", "en"] | None = None
    default_channels: list[str] | None = Field(
        None, max_length=100, description="names of your channels used when a message names none"
    )


class UserIn(Strict):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(description=f"at least {accounts.MIN_PASSWORD} characters")
    role: Literal["admin", "user"] = "user"
    display_name: str = Field("", max_length=128)
    email: str = Field("", max_length=254)
    disabled: StrictBool = False
    preferences: PreferencesIn | None = None

    _check_email = field_validator("email")(_email)


class UserPatch(Strict):
    display_name: str | None = Field(None, max_length=128)
    email: str | None = Field(None, max_length=254)
    role: Literal["admin", "user"] | None = Field(None, description="a change needs X-Confirm")
    disabled: StrictBool | None = Field(
        None, description="true ends the user's sessions and keys at once"
    )
    preferences: PreferencesIn | None = None
    password: str | None = Field(None, description="reset the password; needs X-Confirm")

    _check_email = field_validator("email")(_email)


class MePatch(Strict):
    display_name: str | None = Field(None, max_length=128)
    email: str | None = Field(None, max_length=254)
    preferences: PreferencesIn | None = None
    password: str | None = Field(None, description="a new password; needs current_password")
    current_password: str | None = None

    _check_email = field_validator("email")(_email)


class LoginIn(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str


class TotpCodeIn(Strict):
    code: str = Field(description="the 6-digit code the authenticator app shows now")


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


# --- views ---------------------------------------------------------------------------------


def user_view(u: User) -> dict[str, Any]:
    prefs = dict(u.preferences or {})
    prefs["default_channels"] = accounts.default_channel_names(u.id)
    return {
        "id": u.id,
        "username": u.username,
        "role": u.role,
        "disabled": u.disabled,
        "display_name": u.display_name,
        "email": u.email,
        "preferences": prefs,
        "totp_enabled": u.totp_enabled,
        "created_at": to_rfc3339(u.created_at),
        "updated_at": to_rfc3339(u.updated_at),
    }


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


# --- helpers -------------------------------------------------------------------------------


def account_error(exc: AccountError) -> APIError:
    return APIError(
        exc.status, exc.code, f"{exc.field}: {exc}", [{"field": exc.field, "message": str(exc)}]
    )


def _user_or_404(user_id: int) -> User:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise not_found("user")
    return user


def _preferences(user: User, prefs: PreferencesIn) -> dict[str, Any]:
    """The user's stored preferences with `prefs` applied; default channels are written at once."""
    stored = dict(user.preferences or {})
    if prefs.timezone is not None:
        stored["timezone"] = accounts.validate_timezone(prefs.timezone)
    if prefs.language is not None:
        stored["language"] = prefs.language
    if prefs.default_channels is not None:
        accounts.set_default_channels(user.id, prefs.default_channels)
    return stored


def _profile_changes(user: User, body: UserPatch | MePatch) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if body.display_name is not None:
        changes["display_name"] = body.display_name
    if body.email is not None:
        changes["email"] = body.email
    if body.preferences is not None:
        changes["preferences"] = _preferences(user, body.preferences)
    return changes


def _expiry(req: falcon.Request, value: datetime | None, allow_past: bool) -> float | None:
    """Epoch seconds of a key's expiry; 422 when past (unless allowed) or too far ahead."""
    if value is None:
        return None
    ts = value.timestamp()
    if not allow_past and ts <= time.time():
        raise unprocessable("expires_at", "must be in the future", value.isoformat())
    days = req.context.runtime.settings.limits.max_key_days
    if ts > time.time() + days * 86400:
        raise unprocessable(
            "expires_at",
            f"must be at most {days} days ahead (limits.max_key_days)",
            value.isoformat(),
        )
    return ts


def _forget_user(runtime, user_id: int) -> None:
    runtime.key_authenticator.cache.drop_user(user_id)


# --- users (admin) -------------------------------------------------------------------------


class Users:
    """/api/v1/users and /api/v1/users/{user_id}: every account, for admins.

    HTTP worker thread; raises APIError 403 (X-Confirm), 404, 409 (name taken, last admin) or 422.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = newest_page(req, User, user_view)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_model(req, UserIn)
        if body.role == "admin":
            require_confirmation(req, "creating an admin account")
        try:
            if body.preferences is not None and body.preferences.default_channels:
                raise AccountError(
                    "preferences.default_channels",
                    "a new user has no channels yet; set default channels after creating some",
                )
            with write_transaction():
                user = accounts.create_user(
                    body.username,
                    body.password,
                    role=body.role,
                    display_name=body.display_name,
                    email=body.email,
                    disabled=body.disabled,
                )
                if body.preferences is not None:
                    User.update(preferences=_preferences(user, body.preferences)).where(
                        User.id == user.id
                    ).execute()
        except AccountError as exc:
            raise account_error(exc) from None
        note(req, target=user.id, username=user.username, role=user.role)
        resp.status = falcon.HTTP_201
        resp.media = user_view(User.get_by_id(user.id))

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        resp.media = user_view(_user_or_404(user_id))

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        user = _user_or_404(user_id)
        body = read_model(req, UserPatch)
        role_change = body.role is not None and body.role != user.role
        if role_change:
            require_confirmation(req, "changing a role")
        if body.password is not None:
            require_confirmation(req, "resetting a password")
        try:
            if body.password is not None:
                accounts.validate_password(body.password)
            if (role_change and body.role != "admin" or body.disabled) and accounts.is_last_admin(
                user
            ):
                raise AccountError(
                    "role" if role_change else "disabled",
                    f"{user.username} is the only enabled admin; make another admin first",
                    status=409,
                    code="last_admin",
                )
            changes = _profile_changes(user, body)
            if role_change:
                changes["role"] = body.role
            if body.disabled is not None:
                changes["disabled"] = body.disabled
            with write_transaction():
                User.update(updated_at=time.time(), **changes).where(User.id == user.id).execute()
                if body.disabled:
                    WebSession.delete().where(WebSession.user == user.id).execute()
            if body.password is not None:
                accounts.set_password(user, body.password)
        except AccountError as exc:
            raise account_error(exc) from None
        _forget_user(self.runtime, user.id)
        note(req, changed=sorted(body.model_fields_set))
        resp.media = user_view(User.get_by_id(user.id))

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        user = _user_or_404(user_id)
        principal: Principal = req.context.principal
        data = params.value(req, "data") or "delete"
        if user.id == principal.user_id:
            raise APIError(
                409, "cannot_delete_self", "you cannot delete your own account; ask another admin"
            )
        if accounts.is_last_admin(user):
            raise APIError(
                409,
                "last_admin",
                f"{user.username} is the only enabled admin; make another admin first",
            )
        target = None
        if data == "reassign":
            ref = params.value(req, "to")
            if not ref:
                raise unprocessable(
                    "to", "data=reassign needs ?to=<user id or name> to receive the data"
                )
            target = accounts.find_user(ref)
            if target is None:
                raise unprocessable("to", "no such user", ref)
        try:
            moved = accounts.delete_user(user, target, self.runtime.secretbox)
        except AccountError as exc:
            raise account_error(exc) from None
        _forget_user(self.runtime, user.id)
        note(req, username=user.username, data=data, to=target.id if target else None)
        resp.media = {
            "id": user.id,
            "username": user.username,
            "data": data,
            "reassigned_to": target.id if target else None,
            **moved,
        }


# --- the caller ----------------------------------------------------------------------------


class Me:
    """/api/v1/me: the caller's profile, preferences and password.

    HTTP worker thread; raises APIError 403 `wrong_password` or 422 naming the field.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = user_view(User.get_by_id(req.context.principal.user_id))

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        user = User.get_by_id(principal.user_id)
        body = read_model(req, MePatch)
        if body.password is not None:
            if not body.current_password:
                raise unprocessable(
                    "current_password", "give your current password to set a new one"
                )
            try:
                accounts.validate_password(body.password)
            except AccountError as exc:
                raise account_error(exc) from None
            if not check_secret(req, user, body.current_password, allow_totp=False):
                raise APIError(
                    403,
                    "wrong_password",
                    "current_password is not your current password; the password was not changed",
                )
        try:
            changes = _profile_changes(user, body)
            if changes:
                User.update(updated_at=time.time(), **changes).where(User.id == user.id).execute()
            if body.password is not None:
                accounts.set_password(user, body.password, keep_session_id=principal.session_id)
        except AccountError as exc:
            raise account_error(exc) from None
        note(req, target=user.id, changed=sorted(body.model_fields_set - {"current_password"}))
        resp.media = user_view(User.get_by_id(user.id))


class MeTotp:
    """/api/v1/me/totp: enroll (POST) or remove (DELETE, sensitive) the caller's TOTP second factor.

    HTTP worker thread; raises APIError 409 when TOTP is already on.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = User.get_by_id(req.context.principal.user_id)
        if user.totp_enabled:
            raise APIError(
                409,
                "totp_enabled",
                "TOTP is already enabled; remove it first with DELETE "
                "/api/v1/me/totp (needs X-Confirm) to enroll a new device",
            )
        secret = new_totp_secret()
        # The used-step record belongs to the old secret: a new one starts with none used.
        User.update(
            totp_secret=self.runtime.secretbox.encrypt(secret),
            totp_enabled=False,
            totp_last_step=None,
            updated_at=time.time(),
        ).where(User.id == user.id).execute()
        resp.status = falcon.HTTP_201
        resp.media = {
            "secret": secret,
            "provisioning_uri": totp_uri(secret, user.username),
            "enabled": False,
            "next": 'add it to an authenticator app, then POST /api/v1/me/totp/confirm {"code": …}',
        }

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        User.update(
            totp_secret=None, totp_enabled=False, totp_last_step=None, updated_at=time.time()
        ).where(User.id == req.context.principal.user_id).execute()
        resp.status = falcon.HTTP_204


class MeTotpConfirm:
    """/api/v1/me/totp/confirm: turn an enrolled TOTP secret on by proving a current code.

    HTTP worker thread; raises APIError 409 (nothing enrolled) or 422 (wrong or already used
    code). The code's time step is consumed, so it cannot serve again as an X-Confirm code.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = User.get_by_id(req.context.principal.user_id)
        body = read_model(req, TotpCodeIn)
        if user.totp_secret is None:
            raise APIError(
                409,
                "totp_not_enrolled",
                "no TOTP secret to confirm; enroll first with POST /api/v1/me/totp",
            )
        outcome = use_totp_code(req, user, body.code)
        if outcome == "used":
            raise unprocessable(
                "code",
                "was already used; each code works once: wait for the next code (at most "
                "30 s) and send that",
            )
        if outcome != "ok":
            raise unprocessable(
                "code",
                "is not the current code of the enrolled secret; check the app and the "
                "device clock",
            )
        User.update(totp_enabled=True, updated_at=time.time()).where(User.id == user.id).execute()
        resp.media = {"enabled": True}


# --- web sessions --------------------------------------------------------------------------


class Session:
    """/api/v1/session: web UI log-in (cookie + CSRF token), the current session, log-out.

    HTTP worker thread; a failed log-in sleeps (bounded) before raising APIError 401, a locked
    account or address raises 429 `login_locked`.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_model(req, LoginIn)
        security = self.runtime.settings.security
        keys = accounts.login_keys(body.username, req.remote_addr or "")
        note(req, target=body.username)
        wait = accounts.locked_for(keys)
        if wait > 0:
            raise login_locked(wait)
        user = User.get_or_none(User.username == body.username)
        if user is None:
            dummy_password_check()
        if user is None or not verify_password(user.password_hash, body.password) or user.disabled:
            failures, locked = accounts.record_failure(
                keys, security.login.max_failures, security.login.lockout_seconds
            )
            note(req, failures=failures, locked=locked)
            time.sleep(min(security.login.slowdown_seconds * failures, MAX_LOGIN_DELAY))
            hint = (
                f"; too many failures: locked for {security.login.lockout_seconds:g} s"
                if locked
                else ""
            )
            raise APIError(
                401, "invalid_credentials", f"the username or the password is wrong{hint}"
            )
        accounts.clear_failures(keys)
        ttl = security.session_ttl_hours * 3600
        token = accounts.open_session(user, req.remote_addr or "", ttl)
        req.context.principal = Principal(
            user.id,
            user.username,
            user.role,
            frozenset(ROLE_SCOPES.get(user.role, ())),
            via="session",
        )
        resp.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(ttl),
            path="/",
            http_only=True,
            secure=req.scheme == "https",
            same_site="Strict",
        )
        resp.media = {
            "user": user_view(user),
            "csrf_token": csrf_for(token),
            "expires_at": to_rfc3339(time.time() + ttl),
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        token = session_token(req)
        if principal.via != "session" or token is None:
            raise not_found("web session (this request used an API key)")
        session = WebSession.get_by_id(principal.session_id)
        resp.media = {
            "user": user_view(User.get_by_id(principal.user_id)),
            "csrf_token": csrf_for(token),
            "expires_at": to_rfc3339(session.expires_at),
        }

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        token = session_token(req)
        if req.context.principal.via == "session" and token is not None:
            accounts.close_session(token)
        resp.unset_cookie(SESSION_COOKIE, path="/", same_site="Strict")
        resp.status = falcon.HTTP_204


# --- API keys ------------------------------------------------------------------------------


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


# --- audit log -----------------------------------------------------------------------------


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
        "/api/v1/users",
        "accounts:Users",
        {
            "GET": Op("admin", "List user accounts", query=("limit", "cursor")),
            "POST": Op(
                "admin",
                "Create a user account (an admin account needs X-Confirm)",
                UserIn,
                status=201,
            ),
        },
        tag="users",
    ),
    Route(
        "/api/v1/users/{user_id}",
        "accounts:Users",
        {
            "GET": Op("admin", "One user account"),
            "PATCH": Op(
                "admin",
                "Edit, disable or reset the password of a user (role and password need X-Confirm)",
                UserPatch,
            ),
            "DELETE": Op(
                "admin",
                "Delete a user; ?data=delete (default) removes their data, ?data=reassign&to=<user> "
                "moves it",
                sensitive=True,
                query=(
                    Param("data", "enum", choices=("delete", "reassign")),
                    Param("to", "ref", description="data=reassign: the user who gets the data"),
                ),
            ),
        },
        tag="users",
        suffix="item",
    ),
    Route(
        "/api/v1/me",
        "accounts:Me",
        {
            "GET": Op(AUTHENTICATED, "Your profile and preferences"),
            "PATCH": Op(
                AUTHENTICATED,
                "Change your profile, preferences or password (needs current_password)",
                MePatch,
            ),
        },
        tag="me",
    ),
    Route(
        "/api/v1/me/totp",
        "accounts:MeTotp",
        {
            "POST": Op(
                AUTHENTICATED,
                "Enroll a TOTP second factor: returns the secret and a provisioning URI",
                status=201,
            ),
            "DELETE": Op(
                AUTHENTICATED, "Remove your TOTP second factor", status=204, sensitive=True
            ),
        },
        tag="me",
    ),
    Route(
        "/api/v1/me/totp/confirm",
        "accounts:MeTotpConfirm",
        {
            "POST": Op(
                AUTHENTICATED, "Turn the enrolled TOTP factor on with a current code", TotpCodeIn
            ),
        },
        tag="me",
    ),
    Route(
        "/api/v1/me/audit",
        "accounts:MeAudit",
        {
            "GET": Op(AUTHENTICATED, "Your audit log entries, newest first", query=AUDIT_FILTERS),
        },
        tag="me",
    ),
    Route(
        "/api/v1/session",
        "accounts:Session",
        {
            "POST": Op(
                PUBLIC,
                "Log in to the web UI: sets the mp_session cookie, returns the CSRF token",
                LoginIn,
            ),
            "GET": Op(AUTHENTICATED, "The current web session and its CSRF token"),
            "DELETE": Op(AUTHENTICATED, "Log out of the web UI", status=204),
        },
        tag="session",
    ),
    Route(
        "/api/v1/keys",
        "accounts:Keys",
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
        "accounts:Keys",
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
    Route(
        "/api/v1/admin/audit",
        "accounts:AdminAudit",
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
