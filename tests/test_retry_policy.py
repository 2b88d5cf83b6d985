"""The retry policy: exponential back-off with jitter, capped, and the attempt budget.

Pure functions, driven with a fixed random source instead of the real one.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from messagepusher.supervisor.config import RetrySettings
from messagepusher.supervisor.retry import RetryPolicy

MIDDLE = 0.5  # rand() == 0.5 puts the jitter at exactly zero


def test_the_first_retry_waits_the_base_delay():
    policy = RetryPolicy(base_delay_seconds=2.0, jitter=0.2)
    assert policy.delay(1, lambda: MIDDLE) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("attempts", "expected"), [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 32.0)]
)
def test_each_further_failure_doubles_the_delay(attempts, expected):
    policy = RetryPolicy(base_delay_seconds=2.0, max_delay_seconds=600.0)
    assert policy.delay(attempts, lambda: MIDDLE) == pytest.approx(expected)


def test_the_delay_never_grows_past_max_delay():
    policy = RetryPolicy(base_delay_seconds=2.0, max_delay_seconds=60.0, jitter=0.0)
    assert policy.delay(6, lambda: MIDDLE) == pytest.approx(60.0)
    assert policy.delay(60, lambda: MIDDLE) == pytest.approx(60.0)


def test_jitter_spreads_the_delay_by_at_most_the_jitter_fraction_either_way():
    policy = RetryPolicy(base_delay_seconds=10.0, jitter=0.2)
    assert policy.delay(1, lambda: 0.0) == pytest.approx(8.0)
    assert policy.delay(1, lambda: 1.0) == pytest.approx(12.0)
    assert policy.delay(1, lambda: 0.75) == pytest.approx(11.0)


def test_jitter_applies_to_the_capped_delay_too():
    policy = RetryPolicy(base_delay_seconds=2.0, max_delay_seconds=60.0, jitter=0.5)
    assert policy.delay(20, lambda: 0.0) == pytest.approx(30.0)
    assert policy.delay(20, lambda: 1.0) == pytest.approx(90.0)


def test_a_full_jitter_never_makes_the_delay_negative():
    policy = RetryPolicy(base_delay_seconds=1.0, jitter=1.0)
    assert policy.delay(1, lambda: 0.0) == 0.0


def test_zero_attempts_is_treated_as_the_first_failure():
    policy = RetryPolicy(base_delay_seconds=3.0, jitter=0.0)
    assert policy.delay(0, lambda: MIDDLE) == pytest.approx(3.0)


def test_the_budget_is_exhausted_when_the_attempts_reach_max_attempts():
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


def test_an_entry_s_own_max_attempts_overrides_the_policy_s():
    policy = RetryPolicy(max_attempts=3)
    assert not policy.exhausted(3, max_attempts=5)
    assert policy.exhausted(5, max_attempts=5)


def test_the_policy_is_built_from_the_retry_settings():
    settings = RetrySettings(
        max_attempts=7, base_delay_seconds=0.5, max_delay_seconds=30, jitter=0.1
    )
    assert RetryPolicy.from_settings(settings) == RetryPolicy(7, 0.5, 30.0, 0.1)


def test_the_default_policy_is_the_one_the_default_settings_give():
    assert RetryPolicy() == RetryPolicy.from_settings(RetrySettings())
    assert RetryPolicy() == RetryPolicy(5, 2.0, 600.0, 0.2)


def test_a_policy_cannot_be_changed_once_made_since_every_worker_thread_shares_it():
    policy = RetryPolicy()
    with pytest.raises(FrozenInstanceError):
        policy.max_attempts = 1


def test_a_jitter_above_one_built_by_hand_still_never_makes_the_delay_negative():
    policy = RetryPolicy(base_delay_seconds=1.0, jitter=1.5)
    assert policy.delay(1, lambda: 0.0) == 0.0
