"""Secrets and their checks: passwords (argon2), API keys, session tokens, TOTP codes.

A key reads `mp_<prefix>_<secret>`: the prefix finds the row, the secret is compared in
constant time; keys and session tokens are stored only as SHA-256 hashes. A push token
imported from message-pusher has no prefix: a digest of the whole token stands in for it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

ALL_SCOPES = (
    "messages:send",
    "messages:read",
    "channels:read",
    "channels:write",
    "keys:manage",
    "admin",
)
ROLE_SCOPES = {
    "admin": ALL_SCOPES,
    "user": tuple(s for s in ALL_SCOPES if s != "admin"),
}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def dummy_password_check() -> None:
    """Spend the time of one verification, so an unknown username answers as slowly as a known one."""
    verify_password(_dummy_hash(), "not the password")


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class NewKey:
    prefix: str
    secret_hash: str
    plaintext: str


def new_api_key() -> NewKey:
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(prefix, hash_secret(secret), f"mp_{prefix}_{secret}")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


LEGACY_PREFIX = "legacy-"


def legacy_prefix(token: str) -> str:
    """The prefix column of an imported message-pusher token (31 characters, never mp_-shaped)."""
    return LEGACY_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:24]


def split_key(presented: str) -> tuple[str, str] | None:
    """(prefix, secret) of a key; any other non-empty string may be an imported token. None if empty."""
    token = presented.strip()
    parts = token.split("_", 2)
    if len(parts) == 3 and parts[0] == "mp" and parts[1] and parts[2]:
        return parts[1], parts[2]
    if not token:
        return None
    return legacy_prefix(token), token


def secret_matches(stored_hash: str, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, hash_secret(secret))


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def new_session_token() -> str:
    """A web session's cookie value; only its hash is stored."""
    return secrets.token_urlsafe(32)


def csrf_for(session_token: str) -> str:
    """The CSRF token bound to a session: derived from the cookie, so it is never stored."""
    return hmac.new(session_token.encode(), b"mp-csrf", hashlib.sha256).hexdigest()


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="MessagePusher")


TOTP_DRIFT_STEPS = 1  # codes of the previous and next 30-second step are accepted too (clock drift)


def totp_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The 30-second time step (Unix time // 30) whose code `code` is, within ±TOTP_DRIFT_STEPS of `now`.

    Pure (reads the clock only when `now` is None); any thread. None for a wrong or malformed
    code: anything but six ASCII digits (spaces allowed) never matches and raises nothing. Of
    two matching steps the later is returned, so that consuming it consumes the earlier too.
    """
    code = code.strip().replace(" ", "")
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(time.time() if now is None else now)
    for step in range(current + TOTP_DRIFT_STEPS, current - TOTP_DRIFT_STEPS - 1, -1):
        if hmac.compare_digest(code, totp.generate_otp(step)):
            return step
    return None
