"""Two real servers on one PostgreSQL schema: scheduled jobs and alerts happen once, not once per process.

Each test starts two `main.py serve` processes on the same fresh schema (the `postgres_url`
fixture skips loudly without PostgreSQL, and fails with MP_REQUIRE_POSTGRES=1) and reads the
shared tables directly:

* job_run: a periodic job both processes schedule gets one run per period, whether the nodes
  race for an expired lock every period or one node holds the lock and hands it over on stop;
* alert / message: a shared alert rule that holds on both processes opens one alert and sends one
  notice, one resolved notice, and nothing more when it fires again within the cooldown.

Every wait is a bounded poll on database rows or on the sink; none sleeps blindly.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from typing import Any

import pytest
from support.ops import until, webhook

pytestmark = pytest.mark.xdist_group("heavy")

JOB = "retention_purge"
# Long enough that a node's stop, begun early in a period, ends within it on a slow machine
# (here it takes well under a second).
PERIOD_SECONDS = 3
PERIOD = re.compile(rf"^every {PERIOD_SECONDS}s #(\d+)$")
# Channel configs are encrypted at rest: nodes sharing a database share the key.
SECRET = "shared-secret-of-both-test-nodes"


class Pg:
    """Autocommit psycopg2 connection on the test's schema (its URL sets search_path)."""

    def __init__(self, url: str):
        import psycopg2

        self.conn = psycopg2.connect(url, connect_timeout=5)
        self.conn.autocommit = True

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def pg(postgres_url):
    db = Pg(postgres_url[0])
    yield db
    db.close()


def shared_env(url: str, **extra: str) -> dict[str, str]:
    return {
        "MP_DATABASE__URL": url,
        "MP_SECURITY__SECRET_KEY": SECRET,
        "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
        **extra,
    }


def node_of(api) -> str:
    status = api.get("/api/v1/admin/status")
    assert status.status_code == 200, status.text
    return status.json()["node"]


# --- one run per period ----------------------------------------------------------------------------


def job_env(url: str, lock_seconds: str) -> dict[str, str]:
    # The schedule from the environment replaces the default one: only this job, every period.
    return shared_env(
        url,
        MP_SCHEDULE__RETENTION_PURGE__EVERY=f"{PERIOD_SECONDS}s",
        MP_SCHEDULER__LOCK_SECONDS=lock_seconds,
    )


def runs(pg: Pg) -> list[tuple[int, str, str]]:
    """(period number, owner node, outcome) of every scheduled run of JOB, oldest first."""
    out = []
    for period, owner, outcome in pg.rows(
        "SELECT period_key, owner, outcome FROM job_run WHERE name = %s ORDER BY id", JOB
    ):
        match = PERIOD.match(period)
        assert match, f"unexpected period key {period!r}"
        out.append((int(match.group(1)), owner, outcome))
    return out


def wait_for_periods(
    pg: Pg, first: int, last: int, timeout: float = 60.0
) -> list[tuple[int, str, str]]:
    """Poll until periods first..last each have a finished run and a later period has begun.

    A fire names its period by the clock when it runs, so once `last + 1` has begun a late
    fire names a later period; one that read the clock earlier and is still committing meets
    the lock row, which is what is under test.
    """

    def done() -> list[tuple[int, str, str]] | None:
        got = runs(pg)
        finished = {p for p, _, outcome in got if outcome != "running"}
        ready = set(range(first, last + 1)) <= finished and any(p > last for p, _, _ in got)
        return got if ready else None

    return until(done, timeout, f"{JOB} runs of periods {first}..{last}")


def assert_once_per_period(got: list[tuple[int, str, str]], first: int, last: int) -> None:
    per_period = Counter(p for p, _, _ in got)
    doubles = {p: n for p, n in per_period.items() if n > 1}
    assert not doubles, f"periods run more than once: {doubles}; runs: {got}"
    missing = [p for p in range(first, last + 1) if p not in per_period]
    assert not missing, f"periods without a run: {missing}; runs: {got}"
    failed = [r for r in got if first <= r[0] <= last and r[2] != "ok"]
    assert not failed, f"runs that did not finish ok: {failed}"


def assert_both_schedule_the_job(*apis) -> None:
    for api in apis:
        jobs = {j["name"]: j for j in api.get("/api/v1/admin/jobs").json()["items"]}
        assert jobs[JOB]["scheduled"] and jobs[JOB]["next_run_at"], jobs[JOB]
        assert [j for j, v in jobs.items() if v["scheduled"]] == [JOB]


def test_a_job_both_processes_schedule_runs_once_per_period_while_they_race_for_every_period(
    postgres_url, server_factory, pg
):
    # The lock expires before the next period, so every period both nodes find it free and race.
    url, _schema = postgres_url
    a = server_factory(job_env(url, lock_seconds="0.5"))
    b = server_factory(job_env(url, lock_seconds="0.5"))
    both_up = time.time()  # the scheduler starts before the server listens
    key = a.create_key()
    api_a, api_b = a.client(key), b.client(key)
    assert_both_schedule_the_job(api_a, api_b)
    nodes = {node_of(api_a), node_of(api_b)}
    assert len(nodes) == 2

    first = int(both_up // PERIOD_SECONDS) + 1  # the first period both nodes fire for
    last = first + 2
    got = wait_for_periods(pg, first, last)
    assert_once_per_period(got, first, last)
    assert {owner for _, owner, _ in got} <= nodes


def test_the_lock_holder_runs_every_period_and_hands_the_job_over_on_stop_without_a_gap_or_a_double(
    postgres_url, server_factory, pg
):
    # The lock outlives the period: its holder renews it and the other node is refused.
    url, _schema = postgres_url
    servers = [
        server_factory(job_env(url, lock_seconds="60")),
        server_factory(job_env(url, lock_seconds="60")),
    ]
    both_up = time.time()
    key = servers[0].create_key()
    apis = [s.client(key) for s in servers]
    assert_both_schedule_the_job(*apis)
    nodes = [node_of(api) for api in apis]

    first = int(both_up // PERIOD_SECONDS) + 1
    got = wait_for_periods(pg, first, first)
    holder_node = next(owner for p, owner, _ in got if p == first)
    assert {o for p, o, _ in got if p >= first} == {holder_node}, got
    holder = servers[nodes.index(holder_node)]
    other_node = nodes[1 - nodes.index(holder_node)]

    # Stop the holder early in a period (its stop hands the lock back well before the next fire).
    until(
        lambda: 0.05 < time.time() % PERIOD_SECONDS < 0.3,
        PERIOD_SECONDS + 2,
        "early in a period",
        step=0.01,
    )
    holder.proc.send_signal(signal.SIGTERM)
    assert holder.proc.wait(30) == 0, holder.log()
    stopped = time.time()

    after = int(stopped // PERIOD_SECONDS) + 1  # the first period after the holder is gone
    got = wait_for_periods(pg, first, after)
    assert_once_per_period(got, first, after)
    owners = [o for p, o, _ in got if p >= first]
    switch = owners.index(other_node)
    assert owners == [holder_node] * switch + [other_node] * (len(owners) - switch), owners
    taken_over = min(p for p, o, _ in got if o == other_node)
    assert taken_over <= after, f"the other node took over only at period {taken_over}: {got}"


# --- one alert, one notice ----------------------------------------------------------------------------

# Queues nobody drains: every node's monitor sees their backlog, and the backlog rule's key
# (the recipient) is shared, not per node. Several keys give the nodes several chances to race.
STUCK = [f"stuck_{i}" for i in range(8)]


def stick(pg: Pg) -> None:
    """Queue one entry an hour overdue per STUCK recipient."""
    now = time.time()
    for recipient in STUCK:
        pg.rows(
            "INSERT INTO mailbox (recipient, kind, payload, priority, state, available_at, attempts,"
            " max_attempts, created_at, updated_at)"
            " VALUES (%s, 'stuck', '{}', 3, 'ready', %s, 0, 5, %s, %s)",
            recipient,
            now - 3600,
            now - 3600,
            now,
        )


def unstick(pg: Pg) -> None:
    pg.rows("DELETE FROM mailbox WHERE kind = 'stuck'")


def full_round_on_both(pg: Pg, nodes: list[str], timeout: float = 15.0) -> None:
    """Return once each node has run a whole monitor round that began after this call.

    Every node keeps its own memory_high alert firing (the limit is 1 MB), and every round
    sets its last_at to the round's start time, after the shared rules' alerts are opened or
    updated but before alerts are resolved. So we wait for a round that began after us and
    then for the next one (a node's rounds never overlap): the first has then run whole, on
    what we changed before calling.
    """

    def beats() -> dict[str, float]:
        got = dict(
            pg.rows(
                "SELECT key, last_at FROM alert WHERE rule = 'memory_high' AND state = 'firing'"
            )
        )
        return {node: got.get(f"{node}/memory", 0.0) for node in nodes}

    def after(marks: dict[str, float]) -> dict[str, float] | None:
        now = beats()
        return now if all(now[n] > marks[n] for n in nodes) else None

    start = time.time()
    began = until(
        lambda: after(dict.fromkeys(nodes, start)), timeout, "a monitor round on both nodes"
    )
    until(lambda: after(began), timeout, "the next monitor round on both nodes")


def notices(pg: Pg) -> Counter:
    """Alert notices the monitors handed to ingest, as (kind, rule, key)."""
    counts: Counter = Counter()
    for title, body in pg.rows(
        "SELECT title, body FROM message WHERE title LIKE '[MessagePusher %%'"
    ):
        if title.startswith("[MessagePusher alert] backlog"):
            counts["firing", "backlog", body.split("\n", 1)[0].split(" on ", 1)[1]] += 1
        elif title.startswith("[MessagePusher resolved] backlog: "):
            counts["resolved", "backlog", title.rsplit(": ", 1)[1]] += 1
    return counts


def backlog_alerts(pg: Pg) -> dict[str, list[tuple[int, str, float | None]]]:
    """key -> [(id, state, notified_at)] of every backlog alert, oldest first."""
    out: dict[str, list[tuple[int, str, float | None]]] = {k: [] for k in STUCK}
    for alert_id, key, state, notified_at in pg.rows(
        "SELECT id, key, state, notified_at FROM alert WHERE rule = 'backlog' ORDER BY id"
    ):
        out.setdefault(key, []).append((alert_id, state, notified_at))
    return out


def test_an_alert_both_processes_raise_is_sent_once_resolved_once_and_stays_quiet_within_its_cooldown(
    postgres_url, server_factory, sink, pg
):
    url, _schema = postgres_url
    env = shared_env(
        url,
        MP_MONITOR__INTERVAL="0.05",
        MP_MONITOR__ALERT_CHANNELS="admin/alerts",
        MP_MONITOR__ALERTS__COOLDOWN_SECONDS="600",
        MP_MONITOR__ALERTS__MEMORY_RSS_MAX_MB="1",  # a per-node heartbeat, see full_round_on_both
    )
    a = server_factory(env)
    key = a.create_key()
    api = a.client(key)
    webhook(api, sink.url + "/alerts", name="alerts")
    b = server_factory(env)
    nodes = [node_of(api), node_of(b.client(key))]
    assert nodes[0] != nodes[1]
    full_round_on_both(pg, nodes)

    def sunk() -> Counter:
        counts: Counter = Counter()
        for r in sink.received():
            title = r["body"]["title"]
            if title.startswith("[MessagePusher alert] backlog"):
                counts["firing", title.split(": ", 1)[1].split(" ", 1)[0]] += 1
            elif title.startswith("[MessagePusher resolved] backlog: "):
                counts["resolved", title.rsplit(": ", 1)[1]] += 1
        return counts

    # 1. Every stuck queue fires on both nodes: one alert and one notice each.
    stick(pg)
    full_round_on_both(pg, nodes)
    alerts = backlog_alerts(pg)
    assert all(len(v) == 1 and v[0][1] == "firing" and v[0][2] for v in alerts.values()), str(
        alerts
    )
    fired = {("firing", "backlog", k): 1 for k in STUCK}
    assert notices(pg) == fired
    until(
        lambda: sunk() == Counter({("firing", k): 1 for k in STUCK}),
        30,
        "one firing notice per queue",
    )

    # 2. The backlog drains: each alert is resolved once, with one resolved notice.
    unstick(pg)
    full_round_on_both(pg, nodes)
    alerts = backlog_alerts(pg)
    assert all(len(v) == 1 and v[0][1] == "resolved" for v in alerts.values()), str(alerts)
    resolved = {("resolved", "backlog", k): 1 for k in STUCK}
    assert notices(pg) == {**fired, **resolved}

    # 3. It comes back within the cooldown: a new alert each, and no notice.
    stick(pg)
    full_round_on_both(pg, nodes)
    alerts = backlog_alerts(pg)
    assert all(len(v) == 2 and v[1][1] == "firing" and v[1][2] is None for v in alerts.values()), (
        str(alerts)
    )
    assert notices(pg) == {**fired, **resolved}
    expected = Counter({("firing", k): 1 for k in STUCK} | {("resolved", k): 1 for k in STUCK})
    until(lambda: sunk() == expected, 30, "one firing and one resolved notice per queue")
    full_round_on_both(pg, nodes)
    assert sunk() == expected and notices(pg) == {**fired, **resolved}
