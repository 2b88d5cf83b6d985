"""A user's profile as the users and me resources show and change it, and account errors as API errors.

Shared by http/resources/users.py (admins) and me.py (the caller); keys.py reports account errors the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, StrictBool

from messagepusher.accounts import users as accounts
from messagepusher.accounts.users import AccountError
from messagepusher.http.errors import APIError
from messagepusher.http.schemas import Strict
from messagepusher.supervisor.models import User
from messagepusher.supervisor.timefmt import to_rfc3339

if TYPE_CHECKING:
    from messagepusher.http.resources.me import MePatch
    from messagepusher.http.resources.users import UserPatch


def check_email(value: str | None) -> str | None:
    """The `email` field's check (pydantic validator): an address with a local part and a domain, or empty."""
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
    public_page: StrictBool | None = Field(
        None, description="false: no public page /m/{token} for your messages, nor links to one"
    )


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


def account_error(exc: AccountError) -> APIError:
    """The API error (status, code, the field) an AccountError from accounts/users.py stands for."""
    return APIError(
        exc.status, exc.code, f"{exc.field}: {exc}", [{"field": exc.field, "message": str(exc)}]
    )


def apply_preferences(user: User, prefs: PreferencesIn) -> dict[str, Any]:
    """The user's stored preferences with `prefs` applied; default channels are written at once."""
    stored = dict(user.preferences or {})
    if prefs.timezone is not None:
        stored["timezone"] = accounts.validate_timezone(prefs.timezone)
    if prefs.language is not None:
        stored["language"] = prefs.language
    if prefs.public_page is not None:
        stored["public_page"] = prefs.public_page
    if prefs.default_channels is not None:
        accounts.set_default_channels(user.id, prefs.default_channels)
    return stored


def profile_changes(user: User, body: UserPatch | MePatch) -> dict[str, Any]:
    """The profile fields a PATCH sets (display name, e-mail, preferences), ready for User.update."""
    changes: dict[str, Any] = {}
    if body.display_name is not None:
        changes["display_name"] = body.display_name
    if body.email is not None:
        changes["email"] = body.email
    if body.preferences is not None:
        changes["preferences"] = apply_preferences(user, body.preferences)
    return changes
