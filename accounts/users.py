"""Accounts and their life cycle: users, passwords, preferences, API keys, web sessions, login throttling.

Shared by the CLI, first start and the HTTP API. Every function runs in the caller's thread and
raises AccountError (a field, a message fit for the user, an HTTP status) for anything the user can fix.
"""

from __future__ import annotations

import logging
import os
import re
import time
import zoneinfo
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from messagepusher.accounts.credentials import (
    ALL_SCOPES,
    ROLE_SCOPES,
    csrf_for,
    generate_password,
    hash_password,
    hash_secret,
    new_api_key,
    new_session_token,
)
from messagepusher.accounts.secretbox import SecretBox, load_or_create_key
from messagepusher.supervisor.db import database, write_transaction
from messagepusher.supervisor.models import (
    ApiKey,
    Channel,
    LoginFailure,
    MailboxEntry,
    User,
    WebSession,
)

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

log = logging.getLogger(__name__)

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8


class AccountError(ValueError):
    """A request about an account that cannot be done as asked; `field` names the culprit."""

    def __init__(self, field: str, message: str, status: int = 422, code: str = "invalid_field"):
        super().__init__(message)
        self.field = field
        self.status = status
        self.code = code


# --- users -------------------------------------------------------------------------------


def validate_scopes(scopes: Iterable[str], role: str) -> list[str]:
    scopes = [s.strip() for s in scopes if s.strip()]
    for scope in scopes:
        if scope not in ALL_SCOPES:
            raise AccountError(
                "scopes", f"unknown scope {scope!r}; known scopes: {', '.join(ALL_SCOPES)}"
            )
        if scope not in ROLE_SCOPES[role]:
            raise AccountError("scopes", f"scope {scope!r} needs role admin")
    return sorted(set(scopes))


def validate_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise AccountError("password", f"password must have at least {MIN_PASSWORD} characters")


def validate_role(role: str) -> str:
    if role not in ROLE_SCOPES:
        raise AccountError("role", f"role {role!r} must be admin or user")
    return role


def create_user(username: str, password: str, role: str = "user", **profile: Any) -> User:
    if not USERNAME.match(username or ""):
        raise AccountError(
            "username", f"username {username!r} must be 1-64 letters, digits, _ . or -"
        )
    validate_role(role)
    validate_password(password)
    if User.select().where(User.username == username).exists():
        raise AccountError(
            "username",
            f"user {username!r} already exists; choose another name",
            status=409,
            code="username_taken",
        )
    now = time.time()
    return User.create(
        username=username,
        password_hash=hash_password(password),
        role=role,
        created_at=now,
        updated_at=now,
        **profile,
    )


def find_user(ref: str | int) -> User | None:
    """A user by id or by username."""
    text = str(ref)
    if text.isdigit():
        return User.get_or_none(User.id == int(text))
    return User.get_or_none(User.username == text)


def set_password(user: User, password: str, keep_session_id: int | None = None) -> None:
    """Store a new password and end the user's web sessions (except the one making the change)."""
    validate_password(password)
    with write_transaction():
        User.update(password_hash=hash_password(password), updated_at=time.time()).where(
            User.id == user.id
        ).execute()
        ended = WebSession.delete().where(WebSession.user == user.id)
        if keep_session_id is not None:
            ended = ended.where(WebSession.id != keep_session_id)
        ended.execute()


def is_last_admin(user: User) -> bool:
    """True when `user` is the only enabled admin: demoting, disabling or deleting it would lock everyone out."""
    if user.role != "admin" or user.disabled:
        return False
    others = User.select().where(
        (User.role == "admin") & (User.disabled == False) & (User.id != user.id)  # noqa: E712
    )
    return not others.exists()


def validate_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise AccountError(
            "preferences.timezone",
            f"unknown time zone {name!r}; use an IANA name such as "
            "Asia/Shanghai, Europe/Berlin or UTC",
        ) from None
    return name


def default_channel_names(user_id: int) -> list[str]:
    query = Channel.select(Channel.name).where(
        (Channel.user == user_id) & (Channel.is_default == True)  # noqa: E712
    )
    return sorted(c.name for c in query)


def set_default_channels(user_id: int, names: list[str]) -> list[str]:
    """Mark exactly these of the user's channels as default; every name must be one of theirs."""
    own = {c.name for c in Channel.select(Channel.name).where(Channel.user == user_id)}
    unknown = [n for n in names if n not in own]
    if unknown:
        raise AccountError(
            "preferences.default_channels",
            f"no channel {unknown[0]!r} of yours; "
            f"your channels: {', '.join(sorted(own)) or 'none yet'}",
        )
    now = time.time()
    with write_transaction():
        # Only the rows that change, each with its updated_at: that is what tells a cache.
        for default, chosen in (
            (True, Channel.name.in_(names)),
            (False, Channel.name.not_in(names)),
        ):
            Channel.update(is_default=default, updated_at=now).where(
                (Channel.user == user_id) & chosen & (Channel.is_default != default)
            ).execute()
    return sorted(set(names))


def delete_user(
    user: User,
    reassign_to: User | None,
    secretbox: SecretBox,
    move_messages: Callable[[int, int], int],
) -> dict[str, Any]:
    """Delete a user; their keys and sessions go with them.

    Without `reassign_to` their messages and channels are deleted too (ON DELETE CASCADE).
    With it, messages and channels move to that user; a channel whose name the new owner
    already uses is renamed `<name>-<old username>` (groups that named it follow), and the
    moved channels stop being defaults. `move_messages(from, to)` is the message store's
    transition that moves the messages (`actors.store.move_messages`; this layer does not
    write message rows). Returns what was moved and renamed.
    """
    if reassign_to is not None and reassign_to.id == user.id:
        raise AccountError(
            "to", "cannot reassign a user's data to the same user; name another user"
        )
    moved: dict[str, Any] = {"messages": 0, "channels": 0, "renamed": {}}
    with write_transaction():
        if reassign_to is not None:
            moved = _reassign(user, reassign_to, secretbox, move_messages)
        User.delete().where(User.id == user.id).execute()
    log.info(
        "deleted user %s (id %d)%s",
        user.username,
        user.id,
        f", data moved to {reassign_to.username}" if reassign_to is not None else "",
    )
    return moved


def _reassign(
    user: User, target: User, secretbox: SecretBox, move_messages: Callable[[int, int], int]
) -> dict[str, Any]:
    taken = {c.name for c in Channel.select(Channel.name).where(Channel.user == target.id)}
    channels = list(Channel.select().where(Channel.user == user.id))
    renamed: dict[str, str] = {}
    for channel in channels:
        if channel.name in taken:
            renamed[channel.name] = _free_name(channel.name, user.username, taken)
        taken.add(renamed.get(channel.name, channel.name))
    now = time.time()
    for channel in channels:
        changes: dict[str, Any] = {
            "user": target.id,
            "is_default": False,
            "updated_at": now,
            "name": renamed.get(channel.name, channel.name),
        }
        if channel.type == "group" and renamed:
            config = secretbox.decrypt(channel.config)
            config["members"] = [
                renamed.get(m, m) if isinstance(m, str) else m for m in config.get("members", [])
            ]
            changes["config"] = secretbox.encrypt(config)
        Channel.update(**changes).where(Channel.id == channel.id).execute()
    messages = move_messages(user.id, target.id)
    MailboxEntry.update(user_id=target.id).where(MailboxEntry.user_id == user.id).execute()
    return {"messages": messages, "channels": len(channels), "renamed": renamed}


def _free_name(name: str, suffix: str, taken: set[str]) -> str:
    candidate = f"{name}-{suffix}"[:64]
    number = 2
    while candidate in taken:
        tail = f"-{suffix}-{number}"
        candidate = name[: 64 - len(tail)] + tail
        number += 1
    return candidate


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


# --- TOTP ----------------------------------------------------------------------------------


def consume_totp_step(user_id: int, step: int) -> bool:
    """Record `step` as the user's latest used TOTP step; False if it, or a later step, already was.

    Runs in the caller's thread. One conditional UPDATE, so of two concurrent requests with
    the same code exactly one consumes it (the row lock decides on PostgreSQL, the write lock on
    SQLite). Raises peewee errors when the database fails.
    """
    unused = User.totp_last_step.is_null() | (User.totp_last_step < step)
    return User.update(totp_last_step=step).where((User.id == user_id) & unused).execute() == 1


# --- API keys ------------------------------------------------------------------------------


def create_key(
    user: User, name: str = "", scopes: Iterable[str] | None = None, expires_at: float | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext, which is never stored."""
    chosen = list(ROLE_SCOPES[user.role]) if scopes is None else validate_scopes(scopes, user.role)
    key = new_api_key()
    row = ApiKey.create(
        user=user,
        name=name,
        prefix=key.prefix,
        secret_hash=key.secret_hash,
        scopes=chosen,
        enabled=True,
        created_at=time.time(),
        expires_at=expires_at,
    )
    return row, key.plaintext


# --- web sessions ----------------------------------------------------------------------------


def open_session(user: User, address: str, ttl_seconds: float, now: float | None = None) -> str:
    """Start a web session; returns the cookie token. Only hashes of it and its CSRF token are stored."""
    now = time.time() if now is None else now
    token = new_session_token()
    with write_transaction():
        WebSession.delete().where(WebSession.expires_at <= now).execute()
        WebSession.create(
            user=user.id,
            token_hash=hash_secret(token),
            csrf_token=hash_secret(csrf_for(token)),
            address=address[:255],
            created_at=now,
            expires_at=now + ttl_seconds,
        )
    return token


def find_session(token: str, now: float | None = None) -> WebSession | None:
    """The live session for a cookie token, with its user joined; None when unknown or expired."""
    now = time.time() if now is None else now
    return (
        WebSession.select(WebSession, User)
        .join(User)
        .where((WebSession.token_hash == hash_secret(token)) & (WebSession.expires_at > now))
        .first()
    )


def close_session(token: str) -> None:
    WebSession.delete().where(WebSession.token_hash == hash_secret(token)).execute()


# --- login throttling --------------------------------------------------------------------------


def account_key(username: str) -> str:
    """The LoginFailure row of an account (failed logins and failed X-Confirm both count)."""
    return f"user:{username.lower()[:200]}"


def login_keys(username: str, address: str) -> tuple[str, str]:
    """The LoginFailure rows a login attempt counts against: the account and the client address."""
    return account_key(username), f"addr:{address[:200]}"


def locked_for(keys: Iterable[str], now: float | None = None) -> float:
    """Seconds until every key is unlocked; 0 when none is locked."""
    now = time.time() if now is None else now
    rows = LoginFailure.select().where(
        LoginFailure.key.in_(list(keys)) & (LoginFailure.locked_until > now)
    )
    return max((r.locked_until - now for r in rows), default=0.0)


# One failed attempt against one key, in one statement, so attempts made at the same moment
# through different processes or nodes all count (a read-then-write would lose some on
# PostgreSQL). A row whose lock has ended, or whose last failure is older than the lockout,
# starts again at 1; reaching :max_failures while not locked starts a lock until :until.
_STALE = (
    "((login_failure.locked_until IS NOT NULL AND login_failure.locked_until <= :now) "
    "OR :now - login_failure.last_at > :lockout)"
)
_COUNT = f"(CASE WHEN {_STALE} THEN 1 ELSE login_failure.failures + 1 END)"
RECORD_FAILURE_SQL = f"""
INSERT INTO login_failure ("key", failures, locked_until, last_at)
VALUES (:key, 1, CASE WHEN 1 >= :max_failures THEN :until ELSE NULL END, :now)
ON CONFLICT ("key") DO UPDATE SET
    failures = {_COUNT},
    locked_until = CASE
        WHEN {_COUNT} >= :max_failures AND ({_STALE} OR login_failure.locked_until IS NULL)
        THEN :until
        WHEN {_STALE} THEN NULL
        ELSE login_failure.locked_until END,
    last_at = :now
RETURNING failures, locked_until
"""
_NAMED = re.compile(r":([a-z_]+)")


def record_failure(
    keys: Iterable[str], max_failures: int, lockout_seconds: float, now: float | None = None
) -> tuple[int, bool]:
    """Count one failed attempt against each key. Returns (highest failure count, whether a lock began).

    Failures older than `lockout_seconds`, and those before an expired lock, no longer count.
    Runs in the caller's thread, one statement per key in one transaction; raises peewee errors.
    """
    now = time.time() if now is None else now
    until = now + lockout_seconds
    values = {
        "now": now,
        "until": until,
        "lockout": float(lockout_seconds),
        "max_failures": max_failures,
    }
    db = database.obj
    sql = _NAMED.sub(db.param, RECORD_FAILURE_SQL)
    highest, locked = 0, False
    with write_transaction():
        for key in keys:
            values["key"] = key
            params = tuple(values[name] for name in _NAMED.findall(RECORD_FAILURE_SQL))
            failures, locked_until = db.execute_sql(sql, params).fetchone()
            highest = max(highest, int(failures))
            locked = locked or locked_until == until
    return highest, locked


def clear_failures(keys: Iterable[str]) -> None:
    LoginFailure.delete().where(LoginFailure.key.in_(list(keys))).execute()


def open_accounts(runtime: Runtime) -> str | None:
    """Main thread, right after `runtime.open_storage()`: the secret box (from the configured
    key or the one kept in the data directory) and, on a first start, the admin user.

    Returns the generated admin password (None when one was given or the admin exists).
    Raises SecretKeyError for an unusable key, peewee errors when the database fails.
    """
    runtime.secretbox = SecretBox(
        load_or_create_key(runtime.settings.security.secret_key, runtime.data_dir)
    )
    return bootstrap_admin(os.environ.get("MP_ADMIN_PASSWORD"))
