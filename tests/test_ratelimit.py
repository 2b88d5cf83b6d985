"""Token buckets over a hand-driven clock: refill, burst, waits, unlimited rates, and the
bucket map that makes one bucket per key and remakes it when the settings change.

The HTTP side (429 and Retry-After through the server) is in test_rate_limit.py.
"""

from __future__ import annotations

import pytest

from messagepusher.accounts.ratelimit import BucketMap, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


def test_a_new_bucket_is_full_and_gives_its_whole_burst_at_once(clock):
    bucket = TokenBucket(rate=1.0, burst=3, now=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(1.0)


def test_an_empty_bucket_says_how_long_until_the_tokens_are_there(clock):
    bucket = TokenBucket(rate=2.0, burst=1, now=clock)
    bucket.take()
    assert bucket.take() == pytest.approx(0.5)
    assert bucket.take(3) == pytest.approx(1.5)


def test_a_refused_take_uses_no_token(clock):
    bucket = TokenBucket(rate=1.0, burst=1, now=clock)
    bucket.take()
    assert bucket.take() > 0
    clock.t += 1.0
    assert bucket.take() == 0.0


def test_the_bucket_refills_at_its_rate_as_the_clock_moves(clock):
    bucket = TokenBucket(rate=4.0, burst=4, now=clock)
    for _ in range(4):
        bucket.take()
    clock.t += 0.5
    assert [bucket.take() for _ in range(2)] == [0.0, 0.0]
    assert bucket.take() == pytest.approx(0.25)


def test_a_partial_refill_counts_towards_the_next_token(clock):
    bucket = TokenBucket(rate=1.0, burst=1, now=clock)
    bucket.take()
    clock.t += 0.25
    assert bucket.take() == pytest.approx(0.75)
    clock.t += 0.75
    assert bucket.take() == 0.0


def test_a_long_idle_time_refills_no_further_than_the_burst(clock):
    bucket = TokenBucket(rate=10.0, burst=2, now=clock)
    clock.t += 3600
    assert [bucket.take() for _ in range(2)] == [0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)


def test_taking_several_tokens_at_once_needs_that_many(clock):
    bucket = TokenBucket(rate=1.0, burst=5, now=clock)
    assert bucket.take(5) == 0.0
    clock.t += 2.0
    assert bucket.take(3) == pytest.approx(1.0)
    assert bucket.take(2) == 0.0


def test_exactly_enough_tokens_is_enough(clock):
    bucket = TokenBucket(rate=1.0, burst=2, now=clock)
    assert bucket.take(2) == 0.0
    clock.t += 1.0
    assert bucket.take(1) == 0.0


def test_a_burst_below_one_still_lets_one_request_through(clock):
    bucket = TokenBucket(rate=0.5, burst=0, now=clock)
    assert bucket.burst == 1.0
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(2.0)


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_a_rate_of_zero_or_less_is_unlimited(clock, rate):
    bucket = TokenBucket(rate=rate, burst=1, now=clock)
    assert all(bucket.take() == 0.0 for _ in range(1000))


def test_the_map_keeps_one_bucket_per_key(clock):
    buckets = BucketMap(now=clock)
    assert buckets.take("key-1", rate=1.0, burst=1) == 0.0
    assert buckets.take("key-1", rate=1.0, burst=1) == pytest.approx(1.0)
    assert buckets.take("key-2", rate=1.0, burst=1) == 0.0


def test_the_map_draws_on_the_same_bucket_until_it_is_empty(clock):
    buckets = BucketMap(now=clock)
    assert [buckets.take("k", rate=1.0, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", rate=1.0, burst=3, n=2) == pytest.approx(2.0)
    clock.t += 2.0
    assert buckets.take("k", rate=1.0, burst=3, n=2) == 0.0


def test_the_map_s_buckets_follow_its_clock(clock):
    buckets = BucketMap(now=clock)
    buckets.take("k", rate=1.0, burst=1)
    clock.t += 1.0
    assert buckets.take("k", rate=1.0, burst=1) == 0.0


def test_a_changed_rate_or_burst_starts_a_fresh_bucket_for_the_key(clock):
    buckets = BucketMap(now=clock)
    buckets.take("k", rate=1.0, burst=1)
    assert buckets.take("k", rate=2.0, burst=1) == 0.0, "a new rate: a new, full bucket"
    assert buckets.take("k", rate=2.0, burst=2) == 0.0, "a new burst: a new, full bucket"
    assert buckets.take("k", rate=2.0, burst=2) == 0.0
    assert buckets.take("k", rate=2.0, burst=2) == pytest.approx(0.5), "unchanged: same bucket"


def test_the_bucket_refills_on_a_clock_that_starts_near_zero(clock):
    # time.monotonic() counts from boot: shortly after it, the stamps are small numbers.
    clock.t = 1.0
    bucket = TokenBucket(rate=1.0, burst=2, now=clock)
    bucket.take(2)
    clock.t = 3.0
    assert bucket.take(2) == 0.0


def test_a_lowered_rate_takes_effect_at_once(clock):
    buckets = BucketMap(now=clock)
    assert buckets.take("k", rate=2.0, burst=1) == 0.0
    assert buckets.take("k", rate=1.0, burst=1) == 0.0, "a new rate: a new, full bucket"
    assert buckets.take("k", rate=1.0, burst=1) == pytest.approx(1.0)


def test_a_lowered_burst_takes_effect_at_once(clock):
    buckets = BucketMap(now=clock)
    assert [buckets.take("k", rate=1.0, burst=3) for _ in range(2)] == [0.0, 0.0]
    assert [buckets.take("k", rate=1.0, burst=2) for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("k", rate=1.0, burst=2) == pytest.approx(1.0)


def test_settings_computed_afresh_on_every_call_keep_the_same_bucket(clock):
    # The channel pool derives rate and burst from a per-minute figure on every send.
    buckets = BucketMap(now=clock)
    per_minute = 20

    def take() -> float:
        return buckets.take("channel", per_minute / 60.0, max(1.0, per_minute / 6))

    assert [take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert take() == pytest.approx(2.0)


def test_a_burst_below_one_is_not_taken_for_a_change_on_every_call(clock):
    buckets = BucketMap(now=clock)
    assert buckets.take("k", rate=1.0, burst=0) == 0.0
    assert buckets.take("k", rate=1.0, burst=0) == pytest.approx(1.0)


def test_the_map_lets_everything_through_when_the_rate_is_zero(clock):
    buckets = BucketMap(now=clock)
    assert all(buckets.take("k", rate=0, burst=1) == 0.0 for _ in range(100))
    assert buckets.take("k", rate=1.0, burst=1) == 0.0
