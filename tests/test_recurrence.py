"""Recurring-message time math: cron validation, next runs against CronTrigger, misfire decisions."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from messagepusher.messages import recurrence

START = datetime(2026, 3, 6, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/New_York"])
def test_next_runs_match_apschedulers_crontrigger_in_each_zone(zone):
    tz = ZoneInfo(zone)
    ours = recurrence.next_runs(recurrence.parse_cron("30 2 * * *", tz), START, 5)
    trigger = CronTrigger.from_crontab("30 2 * * *", timezone=tz)
    theirs, prev = [], None
    now = datetime.fromtimestamp(START, tz)
    for _ in range(5):
        prev = trigger.get_next_fire_time(prev, now)
        theirs.append(prev.timestamp())
        now = prev
    assert ours == theirs


def test_new_york_runs_keep_local_time_across_the_spring_forward():
    # 2026-03-08 02:30 does not exist in New York: the clocks jump from 02:00 to 03:00.
    tz = ZoneInfo("America/New_York")
    runs = recurrence.next_runs(recurrence.parse_cron("30 2 * * *", tz), START, 4)
    local = [recurrence.rfc3339_in(t, tz) for t in runs]
    assert local[0] == "2026-03-07T02:30:00-05:00"
    assert local[1].startswith("2026-03-08T03:30:00-04:00")
    assert local[2] == "2026-03-09T02:30:00-04:00"
    assert runs[2] - runs[0] == 2 * 86400 - 3600


@pytest.mark.parametrize(
    ("expr", "field"),
    [
        ("61 * * * *", "cron.minute"),
        ("0 25 * * *", "cron.hour"),
        ("0 0 32 * *", "cron.day"),
        ("0 0 * 13 *", "cron.month"),
        ("0 0 * * funday", "cron.day_of_week"),
        ("0 9 * * 1-5", "cron.day_of_week"),
        ("0 9 * *", "cron"),
    ],
)
def test_a_bad_cron_names_the_field_at_fault(expr, field):
    with pytest.raises(recurrence.RecurrenceError) as caught:
        recurrence.parse_cron(expr, ZoneInfo("UTC"))
    assert caught.value.field == field


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(recurrence.RecurrenceError) as caught:
        recurrence.zone("Mars/Olympus")
    assert caught.value.field == "timezone" and caught.value.value == "Mars/Olympus"


def test_interval_fires_line_up_with_the_epoch_on_every_node():
    trigger = recurrence.trigger_for(None, 2, ZoneInfo("UTC"))
    assert recurrence.next_runs(trigger, 1001.5, 3) == [1002.0, 1004.0, 1006.0]
    assert recurrence.next_fire(trigger, 1002.0) == 1004.0


def test_a_fire_within_grace_is_sent_and_the_next_one_follows():
    trigger = recurrence.trigger_for(None, 60, ZoneInfo("UTC"))
    decision = recurrence.decide(trigger, 600.0, 650.0, grace=300)
    assert decision == recurrence.FireDecision(True, 660.0, False)


def test_a_fire_past_grace_is_missed_and_the_schedule_resumes_within_the_window():
    trigger = recurrence.trigger_for(None, 60, ZoneInfo("UTC"))
    decision = recurrence.decide(trigger, 600.0, 10_000.0, grace=300)
    assert decision.send is False
    assert decision.skipped_to is True
    assert decision.resume_at == 9720.0  # the first fire no more than 300 s before now
