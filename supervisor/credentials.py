"""Passwords (argon2) and API keys (random, shown once, stored as a SHA-256 hash).

A key reads `mp_<prefix>_<secret>`: the prefix finds the row, the secret is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

ALL_SCOPES = ("messages:send", "messages:read", "channels:read", "channels:write", "keys:manage", "admin")
ROLE_SCOPES = {
    "admin": ALL_SCOPES,
    "user": tuple(s for s in ALL_SCOPES if s != "admin"),
}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


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


def split_key(presented: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed key, else None."""
    parts = presented.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != "mp" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def secret_matches(stored_hash: str, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, hash_secret(secret))


def generate_password() -> str:
    return secrets.token_urlsafe(12)
