"""Recurring messages through the real server: each fire one message, across processes and restarts."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from support.ops import db_file, rows, until, webhook

ENV = {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_MAILBOX__SCAN_INTERVAL_SECONDS": "0.2"}


def every(api, seconds: int, **extra):
    made = api.post(
        "/api/v1/schedules",
        json={
            "name": extra.pop("name", "tick"),
            "every_seconds": seconds,
            "message": {"title": "tick", "channels": ["hook"]},
            **extra,
        },
    )
    assert made.status_code == 201, made.text
    return made.json()


def fire_keys(server, message_ids) -> list[str]:
    marks = ",".join("?" * len(message_ids))
    return [
        r[0]
        for r in rows(
            db_file(server),
            f"SELECT idempotency_key FROM message WHERE id IN ({marks})",
            *message_ids,
        )
    ]


def settle(api, schedule_id: int, sink) -> list[dict]:
    """The schedule's fires once none is in flight and every sent one has reached the sink.

    A fire claimed just before a disable still runs; one claimed after is dropped.
    """

    def landed():
        depths = api.get("/api/v1/admin/status").json()["mailbox"]
        if any(q["recipient"] == "schedules" and q["state"] == "leased" for q in depths):
            return None
        fires = api.get(f"/api/v1/schedules/{schedule_id}").json()["recent_fires"]
        sent = {f["message_id"] for f in fires if f["outcome"] == "sent"}
        got = {r["body"]["id"] for r in sink.received()}
        return fires if sent and sent <= got else None

    return until(landed, timeout=20, what="no fire in flight and every sent one at the sink")


def test_a_schedule_every_2s_fires_once_per_period_with_two_processes_on_one_database(
    server_factory, sink, tmp_path
):
    first = server_factory(ENV, data_dir=tmp_path / "shared")
    second = server_factory(ENV, data_dir=tmp_path / "shared")
    api = first.client(first.create_key())
    webhook(api, sink.url + "/in")
    schedule = every(api, 2)
    started = time.time()
    time.sleep(12)
    off = api.patch(f"/api/v1/schedules/{schedule['id']}", json={"enabled": False})
    assert off.status_code == 200 and off.json()["next_runs"] == []
    stopped = time.time()
    settle(api, schedule["id"], sink)
    ids = [r["body"]["id"] for r in sink.received()]
    fires = rows(
        db_file(first),
        "SELECT fire_at, outcome FROM schedule_fire WHERE schedule_id = ? ORDER BY fire_at",
        schedule["id"],
    )
    # the periods that began and ended inside the window
    expected = int(stopped // 2) - int(started // 2)
    assert len(ids) == len(set(ids)) == len(fires), (ids, fires)
    assert expected <= len(fires) <= expected + 1, (expected, fires)
    assert all(outcome == "sent" for _, outcome in fires)
    assert [b - a for (a, _), (b, _) in zip(fires, fires[1:], strict=False)] == [2.0] * (
        len(fires) - 1
    )
    keys = fire_keys(first, ids)
    assert len(set(keys)) == len(keys) == len(ids)
    # both processes took part: the log of each shows it ran its schedules actor
    assert second.proc.poll() is None


def test_a_disabled_schedule_stops_firing_and_enabling_it_resumes(private_server, sink):
    api = private_server.client(private_server.create_key())
    webhook(api, sink.url + "/in")
    schedule = every(api, 1)
    sink.wait_for(lambda got: len(got) >= 2, timeout=15)
    off = api.patch(f"/api/v1/schedules/{schedule['id']}", json={"enabled": False})
    assert off.status_code == 200
    settle(api, schedule["id"], sink)
    settled = len(sink.received())
    time.sleep(4)  # four periods of the schedule: none may fire
    assert len(sink.received()) == settled
    on = api.patch(f"/api/v1/schedules/{schedule['id']}", json={"enabled": True})
    assert len(on.json()["next_runs"]) == 5
    sink.wait_for(lambda got: len(got) > settled, timeout=15)


def test_next_runs_match_crontrigger_for_the_schedules_time_zone(private_server):
    api = private_server.client(private_server.create_key())
    for zone in ("UTC", "Asia/Shanghai", "America/New_York"):
        made = api.post(
            "/api/v1/schedules",
            json={
                "name": f"daily {zone}",
                "cron": "30 2 * * *",
                "timezone": zone,
                "message": {"title": "daily", "channels": ["none"]},
            },
        )
        assert made.status_code == 201, made.text
        got = [datetime.fromisoformat(t) for t in made.json()["next_runs"]]
        trigger = CronTrigger.from_crontab("30 2 * * *", timezone=ZoneInfo(zone))
        want, prev, now = [], None, datetime.now(ZoneInfo(zone))
        for _ in range(5):
            prev = trigger.get_next_fire_time(prev, now)
            want.append(prev)
            now = prev
        assert [g.timestamp() for g in got] == [w.timestamp() for w in want]
        assert all(g.hour == 2 or g.hour == 3 for g in got)  # local time (03:30 on a DST day)


def test_bad_timing_is_a_422_naming_the_field(private_server):
    api = private_server.client(private_server.create_key())
    base = {"name": "bad", "message": {"title": "x"}}
    cases = [
        ({"cron": "0 25 * * *"}, "cron.hour"),
        ({"cron": "0 9 * * 1-5"}, "cron.day_of_week"),
        ({"cron": "0 9 * * mon", "timezone": "Mars/Olympus"}, "timezone"),
        ({"every_seconds": 0}, "every_seconds"),
        ({"cron": "0 9 * * *", "every_seconds": 60}, "body"),
    ]
    for extra, field in cases:
        got = api.post("/api/v1/schedules", json={**base, **extra})
        assert got.status_code == 422, got.text
        fields = [d.get("field") for d in got.json()["error"]["details"]]
        assert field in fields or (field == "body" and got.json()["error"]["details"]), got.text
    assert api.get("/api/v1/schedules").json()["items"] == []


def test_schedules_are_owned_run_now_sends_and_another_user_sees_404(private_server, sink):
    api = private_server.client(private_server.create_key())
    webhook(api, sink.url + "/in")
    schedule = every(api, 3600)
    private_server.create_user("eve")
    eve = private_server.client(private_server.create_key("eve"))
    assert eve.get(f"/api/v1/schedules/{schedule['id']}").status_code == 404
    assert eve.post(f"/api/v1/schedules/{schedule['id']}/run").status_code == 404
    assert eve.delete(f"/api/v1/schedules/{schedule['id']}").status_code == 404
    assert eve.get("/api/v1/schedules").json()["items"] == []
    ran = api.post(f"/api/v1/schedules/{schedule['id']}/run")
    assert ran.status_code == 202, ran.text
    assert (
        ran.json()["next_runs"]
        == api.get(f"/api/v1/schedules/{schedule['id']}").json()["next_runs"]
    )
    message = api.wait_message(ran.json()["message_id"], ("delivered", "failed"))
    assert message["status"] == "delivered" and message["title"] == "tick"
    shown = api.get(f"/api/v1/schedules/{schedule['id']}").json()
    assert shown["recent_fires"][0]["message_id"] == ran.json()["message_id"]
    assert api.delete(f"/api/v1/schedules/{schedule['id']}").status_code == 204
    assert api.get(f"/api/v1/schedules/{schedule['id']}").status_code == 404


def test_a_fire_missed_while_down_is_sent_once_on_start_within_grace(server_factory, sink):
    server = server_factory(ENV)
    api = server.client(server.create_key())
    webhook(api, sink.url + "/in")
    schedule = every(api, 6, misfire_grace_seconds=300)
    first_fire = datetime.fromisoformat(schedule["next_runs"][0]).timestamp()
    if first_fire - time.time() < 2:  # too close to stop before it: take the next one
        first_fire += 6
    server.stop()
    until(lambda: time.time() > first_fire + 7, timeout=20, what="two fires pass while down")
    server.start()
    got = sink.wait_for(lambda r: len(r) >= 2, timeout=20)
    ids = [r["body"]["id"] for r in got]
    keys = Counter(fire_keys(server, ids))
    assert all(n == 1 for n in keys.values()), keys
    fires = rows(
        db_file(server),
        "SELECT fire_at, outcome FROM schedule_fire WHERE schedule_id = ? ORDER BY fire_at",
        schedule["id"],
    )
    assert fires[0][1] == "sent" and fires[0][0] >= first_fire - 6


def test_a_fire_missed_beyond_grace_is_recorded_as_missed_not_sent(server_factory, sink):
    server = server_factory(ENV)
    api = server.client(server.create_key())
    webhook(api, sink.url + "/in")
    schedule = every(api, 4, misfire_grace_seconds=1)
    first_fire = datetime.fromisoformat(schedule["next_runs"][0]).timestamp()
    server.stop()
    stopped = time.time()
    while first_fire <= stopped:  # a fire during the stop may have gone out: the next is missed
        first_fire += 4
    until(lambda: time.time() > first_fire + 2.5, timeout=20, what="the fire and its grace pass")
    server.start()

    def missed():
        shown = api.get(f"/api/v1/schedules/{schedule['id']}").json()
        return [f for f in shown["recent_fires"] if f["outcome"] == "missed"]

    record = until(missed, timeout=20, what="a missed fire recorded")[0]
    assert record["detail"]["misfire_grace_seconds"] == 1
    assert record["message_id"] is None
    sent_ids = {r["body"]["id"] for r in sink.received()}
    late = rows(
        db_file(server),
        "SELECT message_id FROM schedule_fire WHERE schedule_id = ? AND fire_at > ? AND fire_at <= ?",
        schedule["id"],
        stopped,
        first_fire,
    )
    assert all(m is None or m not in sent_ids for (m,) in late)


def test_two_processes_on_postgresql_send_each_fire_of_a_2s_schedule_once(
    server_factory, sink, tmp_path, postgres_url
):
    env = {**ENV, "MP_DATABASE__URL": postgres_url[0]}
    first = server_factory(env, data_dir=tmp_path / "shared")
    server_factory(env, data_dir=tmp_path / "shared")
    api = first.client(first.create_key())
    webhook(api, sink.url + "/in")
    schedule = every(api, 2)
    started = time.time()
    time.sleep(10)
    assert api.patch(f"/api/v1/schedules/{schedule['id']}", json={"enabled": False}).ok
    stopped = time.time()
    fires = settle(api, schedule["id"], sink)
    ids = sorted(r["body"]["id"] for r in sink.received())
    expected = int(stopped // 2) - int(started // 2)
    assert expected <= len(fires) <= expected + 1, (expected, fires)
    assert ids == sorted(f["message_id"] for f in fires), (ids, fires)
    assert len(set(ids)) == len(ids) and {f["outcome"] for f in fires} == {"sent"}
