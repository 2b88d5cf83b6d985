"""Second verification for sensitive operations: `X-Confirm` carries the caller's password or a current TOTP code.

Ops marked Op(sensitive=True) are checked by ConfirmMiddleware; a resource whose sensitivity
depends on the body (an admin key, a role change) calls `require_confirmation` itself. Every
accepted TOTP code consumes its time step for the user (`use_totp_code`), so no code works twice.
"""

from __future__ import annotations

from typing import Literal

import falcon

from messagepusher.accounts.credentials import totp_step, verify_password
from messagepusher.accounts.users import (
    account_key,
    clear_failures,
    consume_totp_step,
    locked_for,
    record_failure,
)
from messagepusher.http.auth import Principal, login_locked
from messagepusher.http.errors import APIError
from messagepusher.supervisor.models import User

HEADER = "X-Confirm"

# What a presented secret turned out to be; "used" is a right TOTP code whose step was consumed before.
Outcome = Literal["ok", "wrong", "used"]


def use_totp_code(req: falcon.Request, user: User, code: str) -> Outcome:
    """Check `code` against the user's TOTP secret and consume its time step.

    Runs in the HTTP worker thread. "used" is a right code whose step (or a later one) was used
    before: a replay, or the loser of two requests with one code. Raises what the secret box
    (an undecryptable secret) and `consume_totp_step` raise.
    """
    step = totp_step(req.context.runtime.secretbox.decrypt(user.totp_secret), code)
    if step is None:
        return "wrong"
    return "ok" if consume_totp_step(user.id, step) else "used"


def verify_secret(
    req: falcon.Request, user: User, presented: str, allow_totp: bool = True
) -> Outcome:
    """Whether `presented` is the user's password (or, with `allow_totp`, an unused current TOTP code).

    Runs in the HTTP worker thread. Failures, a reused TOTP code among them, count against the
    account like failed logins, so a stolen key or session cannot guess the password here;
    raises APIError 429 `login_locked` while the account is locked.
    """
    keys = [account_key(user.username)]
    wait = locked_for(keys)
    if wait > 0:
        raise login_locked(wait)
    code = presented.strip()
    if allow_totp and user.totp_enabled and user.totp_secret and len(code) == 6 and code.isdigit():
        outcome = use_totp_code(req, user, code)
    else:
        outcome = "ok" if verify_password(user.password_hash, presented) else "wrong"
    login = req.context.runtime.settings.security.login
    if outcome == "ok":
        clear_failures(keys)
    else:
        record_failure(keys, login.max_failures, login.lockout_seconds)
    return outcome


def check_secret(req: falcon.Request, user: User, presented: str, allow_totp: bool = True) -> bool:
    """Whether `verify_secret` accepts `presented`. HTTP worker thread; raises what it raises."""
    return verify_secret(req, user, presented, allow_totp) == "ok"


def require_confirmation(req: falcon.Request, what: str) -> None:
    """Refuse unless X-Confirm holds the caller's password or an unused current TOTP code.

    Runs in the HTTP worker thread; raises APIError 403 `confirmation_required` when the
    header is missing, wrong or a TOTP code already used, 429 `login_locked` after too many
    failures.
    """
    principal: Principal = req.context.principal
    presented = req.get_header(HEADER)
    if not presented:
        raise APIError(
            403,
            "confirmation_required",
            f"{what} is a sensitive operation: send your password, or "
            f"a current TOTP code if you enrolled one, in the {HEADER} header",
            {"header": HEADER},
        )
    user = User.get_or_none(User.id == principal.user_id)
    outcome = "wrong" if user is None else verify_secret(req, user, presented)
    if outcome == "used":
        raise APIError(
            403,
            "confirmation_required",
            f"the TOTP code in {HEADER} was already used; each code "
            "works once: wait for the next code (at most 30 s) and repeat the request",
            {"header": HEADER, "reason": "totp_code_used"},
        )
    if outcome != "ok":
        raise APIError(
            403,
            "confirmation_required",
            f"{HEADER} does not match your password or a current "
            "TOTP code; check it (and the device clock for TOTP) and repeat the request",
            {"header": HEADER},
        )


class ConfirmMiddleware:
    """Enforces X-Confirm on every Op(sensitive=True), after authentication and permission.

    Runs in the HTTP worker thread; raises what `require_confirmation` raises.
    """

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource, params
    ) -> None:
        op = getattr(req.context, "op", None)
        if op is not None and op.sensitive and req.context.principal is not None:
            require_confirmation(req, f"{req.method} {req.uri_template}")
