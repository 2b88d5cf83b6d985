"""Token buckets in the database (SharedBuckets): one budget for every process, in one statement.

Two SharedBuckets objects stand for two processes; a FakeClock moves time. Run on SQLite and
on the local PostgreSQL. Through two real servers: tests/test_cluster_state.py.
"""

from __future__ import annotations

import pytest

from messagepusher.accounts.ratelimit import SharedBuckets, grant_for
from messagepusher.supervisor.clock import FakeClock
from messagepusher.supervisor.db import open_database
from messagepusher.supervisor.migrations import migrate
from messagepusher.supervisor.models import RateBucket


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'buckets.db'}"
    else:
        url = request.getfixturevalue("postgres_url")[0]
    database = open_database(url)
    database.connect()
    migrate(database)
    yield database
    database.close()


def test_a_grant_is_the_wanted_amount_else_the_needed_one_else_nothing():
    assert grant_for(10, 5, 1) == 5
    assert grant_for(4.5, 5, 1) == 1
    assert grant_for(1, 5, 1) == 1
    assert grant_for(0.99, 5, 1) == 0


def test_two_processes_share_one_budget_of_burst_then_rate(shared_db):
    clock = FakeClock()
    a, b = SharedBuckets("user", clock.now), SharedBuckets("user", clock.now)
    takes = [(a if i % 2 else b).take(7, rate=2, burst=4) for i in range(6)]
    assert takes[:4] == [0.0] * 4
    assert takes[4] == pytest.approx(0.5) and takes[5] == pytest.approx(0.5)
    clock.advance(0.5)
    assert a.take(7, rate=2, burst=4) == 0.0
    assert b.take(7, rate=2, burst=4) == pytest.approx(0.5)
    clock.advance(10)
    assert sum(1 for i in range(10) if (a, b)[i % 2].take(7, rate=2, burst=4) == 0) == 4


def test_a_refused_take_costs_nothing(shared_db):
    clock = FakeClock()
    a = SharedBuckets("key", clock.now)
    assert a.take(1, rate=1, burst=1) == 0.0
    for _ in range(5):
        assert a.take(1, rate=1, burst=1) == pytest.approx(1.0)
    clock.advance(1)
    assert a.take(1, rate=1, burst=1) == 0.0


def test_keys_and_scopes_have_their_own_rows(shared_db):
    clock = FakeClock()
    assert SharedBuckets("user", clock.now).take(1, rate=1, burst=1) == 0.0
    assert SharedBuckets("user", clock.now).take(2, rate=1, burst=1) == 0.0
    assert SharedBuckets("key", clock.now).take(1, rate=1, burst=1) == 0.0
    assert sorted(r.name for r in RateBucket.select()) == ["key:1", "user:1", "user:2"]


def test_at_high_rates_a_process_takes_a_few_tokens_at_once_and_spends_them_locally(shared_db):
    clock = FakeClock()
    a, b = SharedBuckets("user", clock.now), SharedBuckets("user", clock.now)
    assert a.take(1, rate=100, burst=12) == 0.0  # takes 5 from the row, holds 4
    assert RateBucket.get_by_id("user:1").tokens == pytest.approx(7)
    assert [a.take(1, rate=100, burst=12) for _ in range(4)] == [0.0] * 4
    assert RateBucket.get_by_id("user:1").tokens == pytest.approx(7)
    assert b.take(1, rate=100, burst=12) == 0.0 and b.take(1, rate=100, burst=12) == 0.0
    assert RateBucket.get_by_id("user:1").tokens == pytest.approx(2)
    assert a.take(1, rate=100, burst=12) == 0.0  # only 2 left: it gets the one it needs
    assert RateBucket.get_by_id("user:1").tokens == pytest.approx(1)
    granted = sum(1 for _ in range(20) if (a, b)[_ % 2].take(1, rate=100, burst=12) == 0)
    assert granted == 1 + 3  # the row's last token and what b still held


def test_a_clock_behind_the_stamp_refills_nothing_and_does_not_move_the_stamp_back(shared_db):
    clock = FakeClock()
    ahead = FakeClock(start=clock.now() + 60)
    assert SharedBuckets("user", ahead.now).take(1, rate=1, burst=1) == 0.0
    assert SharedBuckets("user", clock.now).take(1, rate=1, burst=1) == pytest.approx(1.0)
    assert RateBucket.get_by_id("user:1").stamp == ahead.now()


def test_a_rate_of_zero_is_unlimited_and_touches_no_row(shared_db):
    buckets = SharedBuckets("user", FakeClock().now)
    assert all(buckets.take(1, rate=0, burst=0) == 0.0 for _ in range(100))
    assert RateBucket.select().count() == 0
