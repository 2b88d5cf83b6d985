"""Readiness (supervisor/health.py) on a real SQLite file with a fake clock and a stand-in runtime."""

from __future__ import annotations

from types import SimpleNamespace

from messagepusher.supervisor.clock import FakeClock
from messagepusher.supervisor.config import load_settings
from messagepusher.supervisor.health import readiness

RUNNING = {"state": "running", "alive": True, "restart_policy": "permanent", "last_error": None}


def runtime(**kw) -> SimpleNamespace:
    clock = FakeClock()
    return SimpleNamespace(
        settings=load_settings(environ={}),
        clock=clock,
        accepting=True,
        unresponsive={},
        liveness_checked_at=clock.monotonic(),
        supervisor_status=lambda: {"channel_pool": RUNNING, "monitor": RUNNING},
        **kw,
    )


def test_a_process_with_every_actor_running_and_answering_is_ready(db):
    assert readiness(runtime()) == (True, {})


def test_an_actor_overdue_on_its_ping_makes_the_process_not_ready(db):
    rt = runtime()
    rt.unresponsive = {"channel_pool": 3.2}
    assert readiness(rt) == (False, {"channel_pool": "not answering pings for 3.2s"})


def test_a_liveness_check_older_than_the_deadline_means_a_stuck_monitor_and_not_ready(db):
    rt = runtime()
    rt.clock.advance(5.0)
    assert readiness(rt) == (True, {})
    rt.clock.advance(0.5)
    ready, failing = readiness(rt)
    assert not ready and failing == {"monitor": "no liveness check for 5.5s (deadline 5s)"}


def test_before_the_first_liveness_check_readiness_does_not_wait_for_it(db):
    rt = runtime()
    rt.liveness_checked_at = None
    rt.clock.advance(60)
    assert readiness(rt) == (True, {})
