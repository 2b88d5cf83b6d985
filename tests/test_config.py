"""Configuration: defaults, the YAML file, MP_ environment overrides and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.server import REPO

from messagepusher.supervisor.config import ConfigError, load_settings, masked, parse_duration


def write(tmp_path, text: str):
    path = tmp_path / "supervisor.yaml"
    path.write_text(text)
    return path


def error_of(**kw) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(**kw)
    return str(info.value)


def test_defaults_serve_on_localhost_8080_with_sqlite_under_data():
    settings = load_settings(environ={})
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.database_url == "sqlite:///data/messagepusher.db"
    assert settings.security.allow_private_networks is False


def test_the_shipped_supervisor_yaml_is_valid_and_matches_the_defaults():
    shipped = load_settings(REPO / "supervisor.yaml", environ={})
    assert shipped.model_dump() == load_settings(environ={}).model_dump()


def test_a_bad_type_names_the_key_the_value_and_what_is_allowed(tmp_path):
    message = error_of(path=write(tmp_path, "server:\n  port: eighty\n"), environ={})
    assert message.startswith("config error: server.port = 'eighty': ")
    assert "integer" in message and "\n" not in message


def test_an_unknown_key_is_named_with_the_fix(tmp_path):
    message = error_of(path=write(tmp_path, "server:\n  prot: 80\n"), environ={})
    assert message == "config error: unknown key server.prot: remove it or check its spelling"


def test_an_out_of_range_value_says_the_range(tmp_path):
    message = error_of(path=write(tmp_path, "retry:\n  max_attempts: 0\n"), environ={})
    assert (
        message
        == "config error: retry.max_attempts = 0: Input should be greater than or equal to 1"
    )


def test_environment_overrides_use_double_underscores_and_win_over_the_file(tmp_path):
    path = write(tmp_path, "server:\n  port: 9000\nretry:\n  max_attempts: 7\n")
    settings = load_settings(
        path,
        environ={
            "MP_SERVER__PORT": "9001",
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_RETRY__BASE_DELAY_SECONDS": "0.2",
            "MP_DATABASE__URL": "postgresql://u@h:5432/db",
            "MP_DATA_DIR": "/srv/mp",
            "MP_ADMIN_PASSWORD": "not-config",
        },
    )
    assert settings.server.port == 9001
    assert settings.retry.max_attempts == 7
    assert settings.retry.base_delay_seconds == 0.2
    assert settings.security.allow_private_networks is True
    assert settings.database_url == "postgresql://u@h:5432/db"
    assert settings.data_dir == "/srv/mp"


def test_a_bad_environment_value_names_the_variable():
    message = error_of(environ={"MP_RETRY__MAX_ATTEMPTS": "lots"})
    assert message.startswith(
        "config error: retry.max_attempts = 'lots' (from environment MP_RETRY__MAX_ATTEMPTS): "
    )


def test_mp_config_names_the_file(tmp_path):
    path = write(tmp_path, "server:\n  port: 9100\n")
    assert load_settings(environ={"MP_CONFIG": str(path)}).server.port == 9100


def test_a_missing_or_broken_file_is_one_clear_line(tmp_path):
    assert "cannot read" in error_of(path=tmp_path / "nope.yaml", environ={})
    assert "is not valid YAML" in error_of(path=write(tmp_path, "server: [\n"), environ={})
    assert "must hold a mapping" in error_of(path=write(tmp_path, "- a\n- b\n"), environ={})


def test_schedule_triggers_are_checked(tmp_path):
    assert "exactly one of every" in error_of(
        path=write(tmp_path, "schedule:\n  backup: {}\n"), environ={}
    )
    assert "five fields" in error_of(
        path=write(tmp_path, "schedule:\n  backup: {cron: '0 3 *'}\n"), environ={}
    )
    assert parse_duration("5m") == 300 and parse_duration("250ms") == 0.25


def test_an_openai_provider_needs_a_url_and_model_and_the_default_must_exist(tmp_path):
    text = "ai:\n  providers:\n    ds: {kind: openai}\n"
    assert "needs base_url and model" in error_of(path=write(tmp_path, text), environ={})
    text = "ai:\n  default_provider: nope\n"
    assert "default_provider 'nope' is not one of the providers: local" in error_of(
        path=write(tmp_path, text), environ={}
    )


def test_masking_hides_secrets_and_url_passwords():
    out = masked(
        {
            "security": {"secret_key": "abc"},
            "database": {"url": "postgresql://u:pw@h/db"},
            "ai": {"providers": {"x": {"api_key": "sk-1"}}},
        }
    )
    assert out["security"]["secret_key"] == "****"
    assert out["ai"]["providers"]["x"]["api_key"] == "****"
    assert out["database"]["url"] == "postgresql://u:****@h/db"


def run_main(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_a_bad_value_stops_start_up_with_exit_2_and_no_traceback(tmp_path):
    done = run_main("serve", env={"MP_SERVER__PORT": "99999", "MP_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "config error: server.port = 99999 (from environment MP_SERVER__PORT): Input should be less than or equal to 65535"
    ]


def test_config_is_accepted_before_and_after_the_subcommand(tmp_path):
    path = write(tmp_path, "server:\n  port: 9200\nsecurity:\n  secret_key: hush-hush\n")
    for args in (("--config", str(path), "check-config"), ("check-config", "--config", str(path))):
        done = run_main(*args)
        assert done.returncode == 0, done.stderr
        assert '"port": 9200' in done.stdout
        assert "hush-hush" not in done.stdout and '"secret_key": "****"' in done.stdout
