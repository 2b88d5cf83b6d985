"""Run-time configuration: whitelisted PATCHes validated like the file, versions, rollback, live effects."""

from __future__ import annotations

import datetime
import signal

import pytest
from support.ops import CONFIRM, until
from support.server import ServerProcess

from messagepusher.supervisor.runtime_config import (
    RuntimeConfigError,
    check_whitelist,
    diff,
    leaf_paths,
    merge_patch,
    normalise,
)


def test_a_patch_is_read_as_dotted_leaf_keys():
    assert leaf_paths({"channel_pool": {"workers": 4}, "logging": {"level": "DEBUG"}}) == [
        "channel_pool.workers",
        "logging.level",
    ]


def test_a_key_outside_the_whitelist_is_refused_by_name():
    check_whitelist({"retry": {"max_attempts": 3}, "schedule": {"backup": {"every": "1h"}}})
    with pytest.raises(RuntimeConfigError) as info:
        check_whitelist({"channel_pool": {"workers": 4, "timeout_seconds": 3}})
    assert info.value.key == "channel_pool.timeout_seconds" and "channel_pool.workers" in str(
        info.value
    )


def test_patches_merge_and_null_removes_an_override():
    base = {"channel_pool": {"workers": 4}, "retry": {"max_attempts": 3}}
    assert merge_patch(base, {"channel_pool": {"workers": None}, "ai_pool": {"workers": 1}}) == {
        "retry": {"max_attempts": 3},
        "ai_pool": {"workers": 1},
    }


def test_a_new_trigger_for_a_job_replaces_the_other_kind():
    assert normalise({"schedule": {"backup": {"every": "1h"}}}) == {
        "schedule": {"backup": {"every": "1h", "cron": ""}}
    }
    assert normalise({"schedule": {"backup": {"enabled": False}}}) == {
        "schedule": {"backup": {"enabled": False}}
    }


def test_a_diff_names_each_changed_leaf_with_old_and_new():
    assert diff({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == {"a.c": [2, 3]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(
        tmp_path_factory.mktemp("config"), {"MP_CHANNEL_POOL__WORKERS": "3"}
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def api(server):
    return server.client(server.create_key())


def pool(api, name: str = "channel_pool") -> dict:
    return api.get("/api/v1/admin/status").json()["components"][name]["pool"]


def test_a_pool_size_patch_resizes_the_running_pool_and_rollback_restores_it(api):
    before = api.get("/api/v1/admin/config").json()["version"]
    patched = api.patch(
        "/api/v1/admin/config", json={"channel_pool": {"workers": 5}}, headers=CONFIRM
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["diff"] == {"channel_pool.workers": [3, 5]}
    assert pool(api) == {"workers": 5, "max_workers": 5, "in_flight": 0}
    assert api.get("/api/v1/admin/config").json()["values"]["channel_pool"]["workers"] == 5

    versions = api.get("/api/v1/admin/config/versions").json()["items"]
    assert (
        versions[0]["version"] == patched.json()["version"] and versions[0]["username"] == "admin"
    )
    back = api.post(f"/api/v1/admin/config/versions/{before}/rollback", headers=CONFIRM)
    assert back.status_code == 200, back.text
    assert back.json()["comment"] == f"rollback to version {before}"
    assert pool(api)["max_workers"] == 3


def test_a_bad_value_is_a_422_with_the_file_validations_line_naming_the_key(api):
    refused = api.patch(
        "/api/v1/admin/config", json={"channel_pool": {"workers": 0}}, headers=CONFIRM
    )
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert (
        error["message"]
        == "config error: channel_pool.workers = 0: Input should be greater than or equal to 1"
    )
    assert error["details"][0]["field"] == "channel_pool.workers"
    assert error["details"][0]["value"] == 0
    assert pool(api)["max_workers"] == 3


def test_a_key_that_cannot_change_at_run_time_is_a_422_listing_what_can(api):
    refused = api.patch("/api/v1/admin/config", json={"server": {"port": 9}}, headers=CONFIRM)
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    assert refused.json()["error"]["details"][0] == {
        "field": "server.port",
        "message": message,
        "value": 9,
    }
    assert (
        message.startswith("server.port cannot be changed at run time")
        and "channel_pool.workers" in message
    )


def test_an_unknown_version_is_a_404(api):
    assert (
        api.post("/api/v1/admin/config/versions/999/rollback", headers=CONFIRM).status_code == 404
    )


def test_a_schedule_patch_reschedules_the_job_without_a_restart(api):
    patched = api.patch(
        "/api/v1/admin/config",
        json={"schedule": {"retention_purge": {"every": "1s"}}},
        headers=CONFIRM,
    )
    assert patched.status_code == 200, patched.text

    def ran_every_second():
        job = {j["name"]: j for j in api.get("/api/v1/admin/jobs").json()["items"]}[
            "retention_purge"
        ]
        return [r for r in job["last_runs"] if r["period"].startswith("every 1s")]

    until(ran_every_second, 30, "a run in a one-second period")
    jobs = {j["name"]: j for j in api.get("/api/v1/admin/jobs").json()["items"]}
    assert jobs["backup"]["schedule"]["cron"] == "0 3 * * *"  # the other jobs are untouched
    api.patch("/api/v1/admin/config", json={"schedule": {"retention_purge": None}}, headers=CONFIRM)
    assert {j["name"]: j for j in api.get("/api/v1/admin/jobs").json()["items"]}["retention_purge"][
        "schedule"
    ]["every"] == "1h"


def debug_records(api, since: str | None = None) -> list[dict]:
    params = {"level": "DEBUG", "limit": 5000, **({"since": since} if since else {})}
    logs = api.get("/api/v1/admin/logs", params=params)
    assert logs.status_code == 200, logs.text
    return [r for r in logs.json()["items"] if r["level"] == "DEBUG"]


def test_a_log_level_patch_takes_effect_at_once_and_so_does_its_removal(api):
    assert not debug_records(api), "the default level must not keep DEBUG records"
    patched = api.patch(
        "/api/v1/admin/config", json={"logging": {"level": "DEBUG"}}, headers=CONFIRM
    )
    assert patched.status_code == 200, patched.text
    api.get("/api/v1/admin/status")
    assert debug_records(api)
    reverted = api.patch("/api/v1/admin/config", json={"logging": {"level": None}}, headers=CONFIRM)
    assert reverted.status_code == 200, reverted.text
    since = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    for _ in range(3):
        api.get("/api/v1/admin/status")
    assert debug_records(api, since) == []


def test_sighup_applies_the_files_run_time_keys_under_the_stored_versions_which_survive_a_restart(
    server_factory, tmp_path
):
    config = tmp_path / "supervisor.yaml"
    config.write_text("ai_pool:\n  workers: 2\n")
    server = server_factory(config=config)
    api = server.client(server.create_key())
    assert (
        api.patch(
            "/api/v1/admin/config", json={"channel_pool": {"workers": 6}}, headers=CONFIRM
        ).status_code
        == 200
    )

    config.write_text(
        "ai_pool:\n  workers: 3\nchannel_pool:\n  workers: 2\nserver:\n  threads: 4\n"
    )
    server.proc.send_signal(signal.SIGHUP)
    until(lambda: pool(api, "ai_pool")["max_workers"] == 3, 30, "ai_pool resized from the file")
    assert pool(api)["max_workers"] == 6  # the stored version stays on top of the file
    until(
        lambda: "applied only at the next start: server.threads" in server.log(),
        30,
        "a restart-needed warning",
    )

    assert server.stop() == 0
    server.start()
    api = server.client(api.session.headers["Authorization"].split()[1])
    assert pool(api)["max_workers"] == 6 and pool(api, "ai_pool")["max_workers"] == 3


def test_sighup_with_an_invalid_file_keeps_the_running_configuration_and_says_why(
    server_factory, tmp_path
):
    config = tmp_path / "supervisor.yaml"
    config.write_text("ai_pool:\n  workers: 3\n")
    server = server_factory(config=config)
    api = server.client(server.create_key())
    assert pool(api, "ai_pool")["max_workers"] == 3

    config.write_text("ai_pool:\n  workers: -1\n")
    server.proc.send_signal(signal.SIGHUP)
    until(
        lambda: "reload refused, keeping the running configuration" in server.log(),
        30,
        "the refused reload logged",
    )
    assert "ai_pool.workers" in server.log()
    assert pool(api, "ai_pool")["max_workers"] == 3
    assert api.get("/healthz").status_code == 200

    config.write_text("ai_pool:\n  workers: 1\n")
    server.proc.send_signal(signal.SIGHUP)
    until(
        lambda: pool(api, "ai_pool")["max_workers"] == 1, 30, "a good file applies after a bad one"
    )
    until(lambda: "configuration reloaded from" in server.log(), 30, "the good reload logged")
    # The good reload is the barrier: by now the refused one would have logged its own success.
    assert server.log().count("configuration reloaded from") == 1, server.log()[-3000:]


# --- following versions made through other processes, without a server ----------------------


def two_processes(db):
    """Two RuntimeConfigs on one database, as two processes have (nothing started)."""
    from messagepusher.supervisor.clock import FakeClock
    from messagepusher.supervisor.config import load_settings
    from messagepusher.supervisor.runtime import Runtime
    from messagepusher.supervisor.runtime_config import RuntimeConfig

    configs = []
    for _ in range(2):
        runtime = Runtime(load_settings(None), clock=FakeClock())
        runtime.runtime_config = RuntimeConfig(runtime)
        runtime.runtime_config.apply_stored()
        configs.append(runtime.runtime_config)
    return configs


def test_a_version_made_through_another_process_is_followed_and_so_is_its_rollback(db):
    a, b = two_processes(db)
    assert b.follow() is False
    made = a.patch({"retention": {"messages_days": 12}}, None, "admin")
    assert b.runtime.settings.retention.messages_days == 30
    assert b.follow() is True and b.runtime.settings.retention.messages_days == 12
    assert b.applied_version == made["version"] and b.follow() is False
    a.rollback(0, None, "admin")
    assert b.follow() is True and b.runtime.settings.retention.messages_days == 30


def test_a_change_through_a_process_that_has_not_followed_yet_builds_on_the_newest_version(db):
    a, b = two_processes(db)
    a.patch({"retention": {"messages_days": 12}}, None, "admin")
    made = b.patch({"backup": {"keep": 3}}, None, "admin")
    assert made["values"] == {"retention": {"messages_days": 12}, "backup": {"keep": 3}}
    assert list(made["diff"]) == ["backup.keep"], "B ran A's version before diffing against it"
    assert b.runtime.settings.retention.messages_days == 12
