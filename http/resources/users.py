"""Users over HTTP (admins): list, create, edit, disable and delete accounts.

Permissions come from ROUTES below; a role change, a password reset and creating an admin need X-Confirm.
"""

from __future__ import annotations

from typing import Literal

import falcon
from pydantic import Field, StrictBool, field_validator

from messagepusher.accounts import users as accounts
from messagepusher.accounts.users import AccountError
from messagepusher.http import params
from messagepusher.http.audit import note
from messagepusher.http.auth import Principal
from messagepusher.http.confirm import require_confirmation
from messagepusher.http.errors import APIError, not_found, unprocessable
from messagepusher.http.params import Param
from messagepusher.http.resources.common import newest_page, read_model
from messagepusher.http.resources.profile import (
    PreferencesIn,
    account_error,
    apply_preferences,
    check_email,
    profile_changes,
    user_view,
)
from messagepusher.http.routes import Op, Route
from messagepusher.http.schemas import Strict
from messagepusher.messages import store
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import User, WebSession


# Password fields carry no pydantic constraints: a validation error would echo the value.
class UserIn(Strict):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(description=f"at least {accounts.MIN_PASSWORD} characters")
    role: Literal["admin", "user"] = "user"
    display_name: str = Field("", max_length=128)
    email: str = Field("", max_length=254)
    disabled: StrictBool = False
    preferences: PreferencesIn | None = None

    _check_email = field_validator("email")(check_email)


class UserPatch(Strict):
    display_name: str | None = Field(None, max_length=128)
    email: str | None = Field(None, max_length=254)
    role: Literal["admin", "user"] | None = Field(None, description="a change needs X-Confirm")
    disabled: StrictBool | None = Field(
        None, description="true ends the user's sessions and keys at once"
    )
    preferences: PreferencesIn | None = None
    password: str | None = Field(None, description="reset the password; needs X-Confirm")

    _check_email = field_validator("email")(check_email)


def _user_or_404(user_id: int) -> User:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise not_found("user")
    return user


def _forget_user(runtime, user_id: int) -> None:
    runtime.key_authenticator.cache.drop_user(user_id)


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
                    User.update(preferences=apply_preferences(user, body.preferences)).where(
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
            changes = profile_changes(user, body)
            if role_change:
                changes["role"] = body.role
            if body.disabled is not None:
                changes["disabled"] = body.disabled
            with write_transaction():
                User.update(updated_at=self.runtime.clock.now(), **changes).where(
                    User.id == user.id
                ).execute()
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
            moved = accounts.delete_user(user, target, self.runtime.secretbox, store.move_messages)
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


ROUTES = [
    Route(
        "/api/v1/users",
        "users:Users",
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
        "users:Users",
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
]
