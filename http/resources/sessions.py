"""Web UI sessions over HTTP: log in (cookie and CSRF token), the current session, log out.

Permissions come from ROUTES below; failed log-ins are slowed down and locked out.
"""

from __future__ import annotations

import time

import falcon
from pydantic import Field

from messagepusher.accounts import users as accounts
from messagepusher.accounts.credentials import (
    ROLE_SCOPES,
    csrf_for,
    dummy_password_check,
    verify_password,
)
from messagepusher.http.audit import note
from messagepusher.http.auth import SESSION_COOKIE, Principal, login_locked, session_token
from messagepusher.http.errors import APIError, not_found
from messagepusher.http.resources.common import read_model
from messagepusher.http.resources.profile import user_view
from messagepusher.http.routes import AUTHENTICATED, PUBLIC, Op, Route
from messagepusher.http.schemas import Strict
from messagepusher.supervisor.models import User, WebSession
from messagepusher.supervisor.timefmt import to_rfc3339

# A failed login waits slowdown_seconds per recent failure, but never longer than this,
# so that an attacker cannot pin every HTTP worker thread for long.
MAX_LOGIN_DELAY = 5.0


# Password fields carry no pydantic constraints: a validation error would echo the value.
class LoginIn(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str


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
            "expires_at": to_rfc3339(self.runtime.clock.now() + ttl),
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


ROUTES = [
    Route(
        "/api/v1/session",
        "sessions:Session",
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
]
