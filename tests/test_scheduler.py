"""The scheduler: epoch-aligned triggers, period keys, the job lock, and two servers on one database."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from support.ops import rows, until

from messagepusher.supervisor.config import ConfigError, JobSchedule
from messagepusher.supervisor.models import JobLock
from messagepusher.supervisor.scheduler import check_schedule, period_key, take_lock, trigger_for

LOCK_SECONDS = 2.0


def test_an_interval_job_fires_at_multiples_of_its_period_so_every_node_fires_together():
    now = datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)
    fire = trigger_for(JobSchedule(every="7s")).get_next_fire_time(None, now)
    assert fire.timestamp() % 7 == 0 and 0 < (fire - now).total_seconds() <= 7


def test_runs_in_one_period_share_a_key_and_the_next_period_has_another():
    every = JobSchedule(every="10s")
    assert period_key(every, 1000.0) == period_key(every, 1009.9) != period_key(every, 1010.0)
    cron = JobSchedule(cron="0 3 * * *")
    three = datetime(2026, 1, 1, 3, 0, tzinfo=UTC).timestamp()
    assert (
        period_key(cron, three) == period_key(cron, three + 29) != period_key(cron, three + 86400)
    )


def test_an_unknown_job_or_an_unusable_cron_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match=r"schedule\.nightly: unknown job; known jobs: backup"):
        check_schedule({"nightly": JobSchedule(every="1h")})
    with pytest.raises(ConfigError, match=r"schedule\.backup\.cron = '99 \* \* \* \*'"):
        check_schedule({"backup": JobSchedule(cron="99 * * * *")})


def test_one_node_takes_a_period_and_keeps_the_lock_while_it_renews_it(db):
    assert take_lock("job", "a", "p1", now=100, lock_seconds=10)
    assert not take_lock("job", "b", "p1", now=101, lock_seconds=10)  # the period has run
    assert not take_lock("job", "b", "p2", now=105, lock_seconds=10)  # a holds the lock
    assert take_lock("job", "a", "p2", now=106, lock_seconds=10)  # a renews in the next period
    assert not take_lock(
        "job", "a", "p2", now=107, lock_seconds=10
    )  # and never runs a period twice


def test_an_expired_lock_is_taken_over_by_another_node_but_not_for_a_period_that_ran(db):
    take_lock("job", "a", "p1", now=100, lock_seconds=10)
    assert not take_lock("job", "b", "p2", now=109.9, lock_seconds=10)
    assert not take_lock("job", "b", "p1", now=111, lock_seconds=10)
    assert take_lock("job", "b", "p2", now=111, lock_seconds=10)
    assert JobLock.get_by_id("job").owner == "b"


def _runs(path) -> list[tuple[str, str, float]]:
    return rows(
        path,
        "SELECT owner, period_key, started_at FROM job_run WHERE name = 'retention_purge' ORDER BY id",
    )


def _pid(owner: str) -> int:
    return int(owner.split(":")[1])


def test_two_servers_on_one_database_run_a_job_once_per_period_and_the_survivor_takes_over_after_the_expiry(
    server_factory, tmp_path
):
    shared = tmp_path / "shared.db"
    env = {
        "MP_DATABASE__URL": f"sqlite:///{shared}",
        "MP_SCHEDULE__RETENTION_PURGE__EVERY": "1s",
        "MP_SCHEDULER__LOCK_SECONDS": str(LOCK_SECONDS),
    }
    servers = [server_factory(env), server_factory(env)]
    until(lambda: len(_runs(shared)) >= 6, 30, "six runs with both servers up")
    holder_pid = _pid(
        rows(shared, "SELECT owner FROM job_lock WHERE name = 'retention_purge'")[0][0]
    )
    holder = next(s for s in servers if s.proc.pid == holder_pid)
    survivor = next(s for s in servers if s is not holder)
    holder.kill9()
    last_of_holder = max(at for owner, _, at in _runs(shared) if _pid(owner) == holder_pid)

    taken = until(
        lambda: [
            r for r in _runs(shared) if _pid(r[0]) == survivor.proc.pid and r[2] > last_of_holder
        ],
        30,
        "a run by the survivor after the kill",
    )
    gap = taken[0][2] - last_of_holder
    assert LOCK_SECONDS - 0.05 <= gap <= LOCK_SECONDS + 1.5, (
        f"took over {gap:.2f}s after the holder's last run"
    )
    periods = Counter(period for _, period, _ in _runs(shared))
    assert max(periods.values()) == 1, f"a period ran twice: {periods.most_common(3)}"


def test_stop_waits_for_a_fire_in_progress_so_its_lock_is_handed_back(db):
    """A fire that takes its lock after stop() released ours would lock other nodes out."""
    import threading
    import time
    from types import SimpleNamespace

    from messagepusher.supervisor.config import SchedulerSettings
    from messagepusher.supervisor.mailbox import Mailbox
    from messagepusher.supervisor.scheduler import JobScheduler

    in_fire, proceed = threading.Event(), threading.Event()

    def clock() -> float:
        if threading.current_thread() is not main and not in_fire.is_set():
            in_fire.set()  # fire() reads the clock before it takes the lock
            assert proceed.wait(10)
        return time.time()

    main = threading.current_thread()
    runtime = SimpleNamespace(
        settings=SimpleNamespace(
            schedule={"retention_purge": JobSchedule(every="1h")},
            scheduler=SchedulerSettings(lock_seconds=3600),
        ),
        node_id="node-a",
        mailbox=Mailbox(db),
        wake=lambda name: None,
    )
    jobs = JobScheduler(runtime, now=clock)
    jobs.scheduler.start()
    # Due at once, in a worker; an interval job (unlike a one-off) is not removed after it runs.
    jobs.scheduler.add_job(
        jobs.fire, "interval", hours=1, next_run_time=datetime.now(UTC), args=("retention_purge",)
    )
    assert in_fire.wait(10)
    stopper = threading.Thread(target=jobs.stop)
    stopper.start()
    proceed.set()
    stopper.join(10)
    assert not stopper.is_alive()
    lock = JobLock.get_or_none(JobLock.name == "retention_purge")
    assert lock is not None, "stop() returned while the fire was still on its way to the lock"
    assert lock.owner == "node-a" and lock.expires_at <= time.time()
