"""Second verification for sensitive operations: `X-Confirm` carries the caller's password or a current TOTP code.

Ops marked Op(sensitive=True) are checked by ConfirmMiddleware; a resource whose sensitivity
depends on the body (an admin key, a role change) calls `require_confirmation` itself.
"""

from __future__ import annotations

import falcon

from messagepusher.http.auth import Principal, login_locked
from messagepusher.http.errors import APIError
from messagepusher.supervisor.accounts import (
    account_key,
    clear_failures,
    locked_for,
    record_failure,
)
from messagepusher.supervisor.credentials import totp_matches, verify_password
from messagepusher.supervisor.models import User

HEADER = "X-Confirm"


def check_secret(req: falcon.Request, user: User, presented: str, allow_totp: bool = True) -> bool:
    """Whether `presented` is the user's password (or, with `allow_totp`, a current TOTP code).

    Runs in the HTTP worker thread. Failures count against the account like failed logins,
    so a stolen key or session cannot guess the password here; raises APIError 429
    `login_locked` while the account is locked.
    """
    keys = [account_key(user.username)]
    wait = locked_for(keys)
    if wait > 0:
        raise login_locked(wait)
    code = presented.strip()
    if allow_totp and user.totp_enabled and user.totp_secret and len(code) == 6 and code.isdigit():
        matched = totp_matches(req.context.runtime.secretbox.decrypt(user.totp_secret), code)
    else:
        matched = verify_password(user.password_hash, presented)
    login = req.context.runtime.settings.security.login
    if matched:
        clear_failures(keys)
    else:
        record_failure(keys, login.max_failures, login.lockout_seconds)
    return matched


def require_confirmation(req: falcon.Request, what: str) -> None:
    """Refuse unless X-Confirm holds the caller's password or current TOTP code.

    Runs in the HTTP worker thread; raises APIError 403 `confirmation_required` when the
    header is missing or wrong, 429 `login_locked` after too many wrong ones.
    """
    principal: Principal = req.context.principal
    presented = req.get_header(HEADER)
    if not presented:
        raise APIError(403, "confirmation_required", f"{what} is a sensitive operation: send your password, or "
                       f"a current TOTP code if you enrolled one, in the {HEADER} header", {"header": HEADER})
    user = User.get_or_none(User.id == principal.user_id)
    if user is None or not check_secret(req, user, presented):
        raise APIError(403, "confirmation_required", f"{HEADER} does not match your password or a current "
                       "TOTP code; check it (and the device clock for TOTP) and repeat the request",
                       {"header": HEADER})


class ConfirmMiddleware:
    """Enforces X-Confirm on every Op(sensitive=True), after authentication and permission.

    Runs in the HTTP worker thread; raises what `require_confirmation` raises.
    """

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource, params) -> None:
        op = getattr(req.context, "op", None)
        if op is not None and op.sensitive and req.context.principal is not None:
            require_confirmation(req, f"{req.method} {req.uri_template}")
