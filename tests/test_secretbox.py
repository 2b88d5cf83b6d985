"""SecretBox: channel secrets encrypted at rest; cryptography loads on first use, the key is checked at once."""

from __future__ import annotations

import pytest

from messagepusher.accounts.secretbox import (
    SecretBox,
    SecretBoxError,
    _fernet_key,
    load_or_create_key,
)


def test_a_generated_key_is_kept_in_the_data_dir_and_round_trips_a_secret(tmp_path):
    key = load_or_create_key("", tmp_path)
    assert (tmp_path / "secret.key").read_bytes() == key
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_key("", tmp_path) == key
    box = SecretBox(key)
    token = box.encrypt({"token": "秘密-1234"})
    assert "1234" not in token
    assert SecretBox(key).decrypt(token) == {"token": "秘密-1234"}


def test_a_secret_written_with_another_key_names_the_setting_to_check(tmp_path):
    token = SecretBox(_fernet_key("one passphrase")).encrypt("x")
    with pytest.raises(SecretBoxError, match="security.secret_key"):
        SecretBox(_fernet_key("another passphrase")).decrypt(token)


@pytest.mark.parametrize("damaged", [b"", b"too-short", b"!" * 44])
def test_a_damaged_key_file_is_refused_when_the_box_is_made_not_at_first_use(damaged):
    with pytest.raises(ValueError, match="32 url-safe base64-encoded bytes"):
        SecretBox(damaged)
