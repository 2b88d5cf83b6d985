"""Restart intensity and back-off of supervised children, over a hand-driven clock.

No threads and no sleeping: the clock only moves when a test moves it.
"""

from __future__ import annotations

import pytest

from messagepusher.supervisor.restart_policy import RestartPolicy


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


def policy(clock, max_restarts=5, within=60.0, initial=0.05, maximum=5.0) -> RestartPolicy:
    return RestartPolicy(max_restarts, within, initial, maximum, now=clock)


def test_the_first_restart_of_a_child_happens_at_once(clock):
    assert policy(clock).record("fetcher") == 0.0


def test_consecutive_restarts_of_one_child_back_off_exponentially_up_to_the_maximum(clock):
    p = policy(clock, max_restarts=100, initial=0.5, maximum=3.0)
    assert [p.record("fetcher") for _ in range(6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_back_off_is_kept_per_child(clock):
    p = policy(clock, initial=0.5)
    assert p.record("fetcher") == 0.0
    assert p.record("fetcher") == 0.5
    assert p.record("ai_pool") == 0.0


def test_a_child_that_worked_since_its_restart_starts_back_off_afresh(clock):
    p = policy(clock, initial=0.5)
    p.record("fetcher")
    p.record("fetcher")
    p.healthy("fetcher")
    assert p.record("fetcher") == 0.0


def test_more_than_max_restarts_within_the_window_gives_up(clock):
    p = policy(clock, max_restarts=3, within=60.0)
    assert all(p.record("fetcher") is not None for _ in range(3))
    assert p.record("fetcher") is None


def test_restart_intensity_counts_the_restarts_of_all_children_together(clock):
    p = policy(clock, max_restarts=2)
    p.record("fetcher")
    p.record("ai_pool")
    assert p.record("monitor") is None


def test_restarts_older_than_the_window_are_forgotten(clock):
    p = policy(clock, max_restarts=2, within=10.0)
    p.record("fetcher")
    clock.t += 5
    p.record("fetcher")
    clock.t += 5.5
    assert p.restarts_in_window() == 1
    assert p.record("fetcher") is not None
    assert p.record("fetcher") is None


def test_max_restarts_zero_gives_up_on_the_first_crash(clock):
    assert policy(clock, max_restarts=0).record("channel_pool") is None


def test_a_refused_restart_is_not_counted_in_the_window(clock):
    p = policy(clock, max_restarts=1)
    p.record("fetcher")
    assert p.record("fetcher") is None
    assert p.restarts_in_window() == 1


def test_a_late_ping_from_a_busy_child_is_not_a_hang():
    from messagepusher.supervisor.restart_policy import is_hung

    assert not is_hung(ping_age=12.0, stalled=0.01, timeout=5.0)
    assert not is_hung(ping_age=3.0, stalled=30.0, timeout=5.0)
    assert is_hung(ping_age=6.0, stalled=6.0, timeout=5.0)


def test_the_window_is_measured_from_each_restart_even_on_a_clock_that_starts_near_zero(clock):
    # time.monotonic() counts from boot: shortly after it, restart times are small numbers.
    clock.t = 5.0
    p = policy(clock, max_restarts=1, within=10.0)
    p.record("fetcher")
    clock.t = 16.0
    assert p.restarts_in_window() == 0
    assert p.record("fetcher") is not None


def test_a_restart_exactly_within_seconds_ago_still_counts(clock):
    p = policy(clock, max_restarts=1, within=10.0)
    p.record("fetcher")
    clock.t += 10.0
    assert p.restarts_in_window() == 1
    assert p.record("fetcher") is None
    clock.t += 0.5
    assert p.restarts_in_window() == 0
    assert p.record("fetcher") is not None


def test_a_large_restart_limit_is_enforced_too(clock):
    p = policy(clock, max_restarts=300, within=60.0)
    assert all(p.record(f"child{i}") is not None for i in range(300))
    assert p.record("fetcher") is None


def test_a_ping_or_a_stall_of_exactly_the_timeout_is_not_yet_a_hang():
    from messagepusher.supervisor.restart_policy import is_hung

    assert not is_hung(ping_age=5.0, stalled=9.0, timeout=5.0)
    assert not is_hung(ping_age=9.0, stalled=5.0, timeout=5.0)
    assert is_hung(ping_age=5.001, stalled=5.001, timeout=5.0)
