"""The caller's own account over HTTP: profile, preferences and password.

Permissions come from ROUTES below; a new password needs the current one.
"""

from __future__ import annotations

import falcon
from pydantic import Field, field_validator

from messagepusher.accounts import users as accounts
from messagepusher.accounts.users import AccountError
from messagepusher.http.audit import note
from messagepusher.http.auth import Principal
from messagepusher.http.confirm import check_secret
from messagepusher.http.errors import APIError, unprocessable
from messagepusher.http.resources.common import read_model
from messagepusher.http.resources.profile import (
    PreferencesIn,
    account_error,
    check_email,
    profile_changes,
    user_view,
)
from messagepusher.http.routes import AUTHENTICATED, Op, Route
from messagepusher.http.schemas import Strict
from messagepusher.supervisor.models import User


# Password fields carry no pydantic constraints: a validation error would echo the value.
class MePatch(Strict):
    display_name: str | None = Field(None, max_length=128)
    email: str | None = Field(None, max_length=254)
    preferences: PreferencesIn | None = None
    password: str | None = Field(None, description="a new password; needs current_password")
    current_password: str | None = None

    _check_email = field_validator("email")(check_email)


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
            changes = profile_changes(user, body)
            if changes:
                User.update(updated_at=self.runtime.clock.now(), **changes).where(
                    User.id == user.id
                ).execute()
            if body.password is not None:
                accounts.set_password(user, body.password, keep_session_id=principal.session_id)
        except AccountError as exc:
            raise account_error(exc) from None
        note(req, target=user.id, changed=sorted(body.model_fields_set - {"current_password"}))
        resp.media = user_view(User.get_by_id(user.id))


ROUTES = [
    Route(
        "/api/v1/me",
        "me:Me",
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
]
