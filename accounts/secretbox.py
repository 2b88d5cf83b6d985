"""Encryption of secrets at rest (channel configs, TOTP seeds) with Fernet.

The key comes from `security.secret_key`, or is generated once into the data dir (mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

KEY_FILE = "secret.key"


class SecretBoxError(Exception):
    """A stored secret cannot be decrypted (the key changed or the data is damaged)."""


def _fernet_key(secret: str) -> bytes:
    """Accept a Fernet key as is; derive one from any other passphrase."""
    raw = secret.encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except ValueError:
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def load_or_create_key(configured: str, data_dir: Path) -> bytes:
    """The configured key, else the one in data_dir/secret.key, created on first use."""
    if configured:
        return _fernet_key(configured)
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(os.urandom(32))  # what Fernet.generate_key() does
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


class SecretBox:
    """Encrypts and decrypts in the caller's thread; safe to share between threads.

    cryptography is imported on the first encrypt or decrypt, not at start-up; the key's
    form is checked here, so a damaged key file still stops the start (ValueError).
    """

    def __init__(self, key: bytes):
        try:
            valid = len(base64.urlsafe_b64decode(key)) == 32
        except ValueError:
            valid = False
        if not valid:
            raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.")
        self._key = key
        self._fernet: Fernet | None = None

    def _box(self) -> Fernet:
        if self._fernet is None:  # two first callers may each build one: they are equal
            from cryptography.fernet import Fernet

            self._fernet = Fernet(self._key)
        return self._fernet

    def encrypt(self, value: Any) -> str:
        return self._box().encrypt(json.dumps(value, ensure_ascii=False).encode()).decode()

    def decrypt(self, token: str) -> Any:
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self._box().decrypt(token.encode()))
        except InvalidToken:
            raise SecretBoxError(
                "a stored secret cannot be decrypted: security.secret_key (or data/secret.key) "
                "is not the key it was written with"
            ) from None
