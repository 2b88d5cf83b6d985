"""One liveness setting: monitor.ping_deadline_seconds, with supervisor.ping_timeout_seconds read
as its deprecated name (a warning once per process)."""

from __future__ import annotations

import logging

import pytest

from messagepusher.actors.monitor import hung_detail, liveness_period
from messagepusher.supervisor import config
from messagepusher.supervisor.config import liveness_deadline, load_settings


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(config, "_warned", set())


def test_the_deadline_is_monitor_ping_deadline_seconds_by_default():
    assert liveness_deadline(load_settings(environ={})) == (5.0, "monitor.ping_deadline_seconds")


def test_the_deprecated_supervisor_key_alone_sets_the_deadline_and_warns_once(caplog):
    environ = {"MP_SUPERVISOR__PING_TIMEOUT_SECONDS": "1"}
    with caplog.at_level(logging.WARNING, logger="messagepusher.supervisor.config"):
        settings = load_settings(environ=environ)
        load_settings(environ=environ)  # a SIGHUP reload reads the file again
    assert liveness_deadline(settings) == (1.0, "supervisor.ping_timeout_seconds")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "supervisor.ping_timeout_seconds is deprecated" in warnings[0]
    assert "monitor.ping_deadline_seconds" in warnings[0]


def test_the_monitor_key_wins_when_both_are_set():
    settings = load_settings(
        environ={
            "MP_SUPERVISOR__PING_TIMEOUT_SECONDS": "60",
            "MP_MONITOR__PING_DEADLINE_SECONDS": "2",
        }
    )
    assert liveness_deadline(settings) == (2.0, "monitor.ping_deadline_seconds")


def test_a_hang_report_names_the_deprecated_key_only_when_that_key_set_the_deadline():
    assert hung_detail(2, "monitor.ping_deadline_seconds") == (
        "no answer to the monitor's ping within 2s"
    )
    deprecated = hung_detail(1, "supervisor.ping_timeout_seconds")
    assert deprecated.startswith("no answer to the monitor's ping within 1s (")
    assert "supervisor.ping_timeout_seconds" in deprecated


def test_liveness_is_checked_four_times_per_deadline_but_never_less_often_than_each_round():
    assert liveness_period(load_settings(environ={})) == 1.25
    fast_rounds = load_settings(environ={"MP_MONITOR__INTERVAL": "0.2"})
    assert liveness_period(fast_rounds) == 0.2
