"""Encryption of secrets at rest (channel configs, TOTP seeds) with Fernet.

The key comes from `security.secret_key`, or is generated once into the data dir (mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

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
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


class SecretBox:
    def __init__(self, key: bytes):
        self._fernet = Fernet(key)

    def encrypt(self, value: Any) -> str:
        return self._fernet.encrypt(json.dumps(value, ensure_ascii=False).encode()).decode()

    def decrypt(self, token: str) -> Any:
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise SecretBoxError(
                "a stored secret cannot be decrypted: security.secret_key (or data/secret.key) "
                "is not the key it was written with"
            ) from None
