"""Creating users and API keys, shared by the CLI, first start and the HTTP API.

Runs in the caller's thread; raises AccountError with a message fit for the user.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

from messagepusher.supervisor.credentials import (
    ALL_SCOPES,
    ROLE_SCOPES,
    generate_password,
    hash_password,
    new_api_key,
)
from messagepusher.supervisor.models import ApiKey, User

log = logging.getLogger(__name__)

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class AccountError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def validate_scopes(scopes: Iterable[str], role: str) -> list[str]:
    scopes = [s.strip() for s in scopes if s.strip()]
    for scope in scopes:
        if scope not in ALL_SCOPES:
            raise AccountError("scopes", f"unknown scope {scope!r}; known scopes: {', '.join(ALL_SCOPES)}")
        if scope not in ROLE_SCOPES[role]:
            raise AccountError("scopes", f"scope {scope!r} needs role admin")
    return sorted(set(scopes))


def create_user(username: str, password: str, role: str = "user", **profile) -> User:
    if not USERNAME.match(username or ""):
        raise AccountError("username", f"username {username!r} must be 1-64 letters, digits, _ . or -")
    if role not in ROLE_SCOPES:
        raise AccountError("role", f"role {role!r} must be admin or user")
    if len(password or "") < 8:
        raise AccountError("password", "password must have at least 8 characters")
    if User.select().where(User.username == username).exists():
        raise AccountError("username", f"user {username!r} already exists")
    now = time.time()
    return User.create(
        username=username, password_hash=hash_password(password), role=role,
        created_at=now, updated_at=now, **profile,
    )


def create_key(
    user: User, name: str = "", scopes: Iterable[str] | None = None, expires_at: float | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext, which is never stored."""
    chosen = list(ROLE_SCOPES[user.role]) if scopes is None else validate_scopes(scopes, user.role)
    key = new_api_key()
    row = ApiKey.create(
        user=user, name=name, prefix=key.prefix, secret_hash=key.secret_hash,
        scopes=chosen, enabled=True, created_at=time.time(), expires_at=expires_at,
    )
    return row, key.plaintext


def bootstrap_admin(password: str | None) -> str | None:
    """On an empty database create `admin`. Returns the generated password, if one was made."""
    if User.select().exists():
        return None
    generated = None
    if not password:
        password = generated = generate_password()
    create_user("admin", password, role="admin", display_name="Administrator")
    log.info("first start: created user admin")
    return generated
