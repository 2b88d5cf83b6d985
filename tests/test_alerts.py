"""Alert rules and their life cycle (operations/alerts.py): pure, driven with an explicit clock."""

from __future__ import annotations

from dataclasses import replace

from messagepusher.operations import alerts
from messagepusher.operations.alerts import (
    Action,
    Condition,
    Observation,
    OpenAlert,
    evaluate,
    owned,
    plan,
)
from messagepusher.supervisor.config import AlertSettings

NODE = "host:1:100"
LIMITS = AlertSettings(
    backlog_age_seconds=60,
    dead_letters_per_interval=5,
    failure_rate=0.5,
    disk_free_min_mb=100,
    memory_rss_max_mb=500,
    restarts_per_interval=3,
    cooldown_seconds=600,
)
CALM = Observation(
    node=NODE,
    interval=10,
    actors={"ingest": "running", "channel_pool": "running"},
    restarts={"ingest": 0},
    backlog_ages={"channel_pool": 1.0},
    dead_letters_new=0,
    deliveries_sent=100,
    deliveries_failed=1,
    disk_free_mb=10_000,
    rss_mb=100,
    integrity=None,
)
BACKLOG = Condition("backlog", "channel_pool", "warning", "waiting")


def rules(obs: Observation) -> dict[str, str]:
    return {c.rule: c.key for c in evaluate(obs, LIMITS)}


def test_a_calm_system_raises_no_condition():
    assert evaluate(CALM, LIMITS) == []


def test_each_rule_fires_past_its_threshold_and_names_where():
    assert rules(replace(CALM, actors={"ingest": "restarting"})) == {"actor_down": f"{NODE}/ingest"}
    assert rules(replace(CALM, restarts={"ingest": 3})) == {"actor_restarting": f"{NODE}/ingest"}
    assert rules(replace(CALM, backlog_ages={"channel_pool": 61})) == {"backlog": "channel_pool"}
    assert rules(replace(CALM, dead_letters_new=5)) == {"dead_letters": "mailbox"}
    assert rules(replace(CALM, deliveries_sent=5, deliveries_failed=5)) == {
        "failure_rate": f"{NODE}/deliveries"
    }
    assert rules(replace(CALM, disk_free_mb=99)) == {"disk_low": f"{NODE}/disk"}
    assert rules(replace(CALM, rss_mb=501)) == {"memory_high": f"{NODE}/memory"}
    assert rules(replace(CALM, integrity="row 3 missing from index")) == {"integrity": "database"}


def test_a_failure_rate_over_too_few_deliveries_is_not_judged():
    assert (
        rules(
            replace(CALM, deliveries_sent=0, deliveries_failed=alerts.MIN_DELIVERIES_FOR_RATE - 1)
        )
        == {}
    )


def test_a_new_condition_opens_an_alert_and_notifies():
    assert plan([BACKLOG], [], {}, 600, now=1000) == [Action("open", None, BACKLOG, True)]


def test_a_condition_that_holds_on_only_updates_its_alert_without_a_second_notice():
    firing = OpenAlert(7, "backlog", "channel_pool", notified_at=1000)
    for now in (1001, 1300, 5000):
        assert plan([BACKLOG], [firing], {("backlog", "channel_pool"): 1000}, 600, now) == [
            Action("update", 7, BACKLOG, False)
        ]


def test_the_same_condition_twice_in_one_round_is_one_alert():
    assert len(plan([BACKLOG, BACKLOG], [], {}, 600, now=1000)) == 1


def test_a_resolved_condition_resolves_its_alert_with_a_notice_only_if_its_firing_was_notified():
    notified = OpenAlert(7, "backlog", "channel_pool", notified_at=1000)
    silent = OpenAlert(8, "disk_low", f"{NODE}/disk", notified_at=None)
    assert plan([], [notified, silent], {}, 600, now=1100) == [
        Action("resolve", 7, None, True),
        Action("resolve", 8, None, False),
    ]


def test_a_condition_back_within_the_cooldown_opens_quietly_and_notifies_once_the_cooldown_passed():
    last = {("backlog", "channel_pool"): 1000.0}
    assert plan([BACKLOG], [], last, 600, now=1200) == [Action("open", None, BACKLOG, False)]
    quiet = OpenAlert(9, "backlog", "channel_pool", notified_at=None)
    assert plan([BACKLOG], [quiet], last, 600, now=1599) == [Action("update", 9, BACKLOG, False)]
    assert plan([BACKLOG], [quiet], last, 600, now=1600) == [Action("update", 9, BACKLOG, True)]


def test_a_node_judges_its_own_and_shared_alerts_but_not_another_nodes():
    assert owned("channel_pool", NODE) and owned(f"{NODE}/ingest", NODE)
    assert not owned("host:2:200/ingest", NODE)


def test_notices_say_what_fired_and_for_how_long_it_held():
    title, body = alerts.firing_notice(BACKLOG, NODE, 7)
    assert (
        title.startswith("[MessagePusher alert] backlog")
        and NODE in body
        and "alerts/7/ack" in body
    )
    title, body = alerts.resolved_notice("backlog", "channel_pool", "waiting", 1000, 1090)
    assert title == "[MessagePusher resolved] backlog: channel_pool" and "(90s)" in body
