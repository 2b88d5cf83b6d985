"""The janitor: retention cut-offs, batched purge under load, maintenance, and the daily reports."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from support.ops import db_file, rows, run_job, until, webhook

from messagepusher.actors.janitor import maintain, retention_cutoffs, should_vacuum
from messagepusher.operations import reports
from messagepusher.supervisor.config import RetentionSettings, load_settings
from messagepusher.supervisor.models import AuditLog, Delivery, Message, Report, User

# Never due during the test, and within limits.max_schedule_days (366) of now.
LATER = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300 * 86400))

DAY = 86400


def test_each_kind_of_row_has_its_own_retention_cutoff():
    cutoffs = retention_cutoffs(
        RetentionSettings(messages_days=30, mailbox_days=7, audit_days=180), now=1000 * DAY
    )
    assert (
        cutoffs["messages"] == 970 * DAY
        and cutoffs["mailbox"] == 993 * DAY
        and cutoffs["audit"] == 820 * DAY
    )


def test_vacuum_runs_only_past_the_free_page_threshold():
    assert (
        should_vacuum(30, 100, 0.25)
        and not should_vacuum(25, 100, 0.25)
        and not should_vacuum(0, 0, 0.25)
    )


def test_maintenance_checks_integrity_and_vacuums_a_file_with_many_free_pages(db, tmp_path):
    AuditLog.insert_many(
        [{"at": 0, "action": "x", "detail": {"pad": "x" * 2000}} for _ in range(300)]
    ).execute()
    AuditLog.delete().execute()
    runtime = SimpleNamespace(db=db, settings=load_settings(environ={"MP_DATA_DIR": str(tmp_path)}))
    detail = maintain(runtime)
    assert detail["integrity"] == "ok" and detail["vacuumed"] and detail["checkpoint"]["complete"]
    assert db.execute_sql("PRAGMA freelist_count").fetchone()[0] == 0


def test_percentiles_are_nearest_rank_and_empty_is_none():
    values = [float(v) for v in range(1, 101)]
    assert reports.percentile(values, 50) == 50 and reports.percentile(values, 95) == 95
    assert reports.percentile([], 50) is None


def test_the_daily_report_counts_sent_and_failed_per_user_and_channel_with_latency(db):
    start, _ = reports.day_bounds("2026-03-01")
    user = User.create(username="u", password_hash="-", created_at=0, updated_at=0)
    for i, (status, latency) in enumerate(
        [("sent", 1.0), ("sent", 3.0), ("failed", None), ("sent", 2.0)]
    ):
        message = Message.create(
            user=user,
            status="delivered",
            accepted_status="queued",
            created_at=start + i,
            updated_at=start + i,
        )
        Delivery.create(
            message=message,
            channel_name="hook" if i < 3 else "mail",
            channel_type="webhook",
            status=status,
            sent_at=start + i + latency if latency else None,
            created_at=start + i,
            updated_at=start + i,
        )
    Message.create(
        user=user, status="delivered", accepted_status="queued", created_at=start - 1, updated_at=0
    )

    assert reports.write_daily_reports("2026-03-01") == {
        "day": "2026-03-01",
        "users": 1,
        "messages_accepted": 4,
    }
    mine = Report.get((Report.scope == "user") & (Report.user_id == user.id)).data
    assert mine["messages"] == 4
    assert mine["channels"]["hook"] == {
        "type": "webhook",
        "sent": 2,
        "failed": 1,
        "pending": 0,
        "latency_p50_seconds": 1.0,
        "latency_p95_seconds": 3.0,
    }
    assert mine["totals"]["sent"] == 3 and mine["totals"]["latency_p50_seconds"] == 2.0
    system = Report.get(Report.scope == "system").data
    assert system["messages_accepted"] == 4 and system["deliveries"]["failed"] == 1
    reports.write_daily_reports("2026-03-01")
    assert (
        Report.select().where(Report.day == "2026-03-01").count() == 2
    )  # a rerun replaces the day


def test_retention_purge_removes_only_what_is_past_its_age_in_batches_while_sends_go_on(
    server_factory, sink
):
    server = server_factory(
        {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_RETENTION__BATCH_SIZE": "2"}
    )
    api = server.client(server.create_key())
    webhook(api, sink.url + "/in")
    ids = [
        api.post("/api/v1/messages", json={"title": f"m{i}", "channels": ["hook"]}).json()["id"]
        for i in range(7)
    ]
    for message_id in ids:
        api.wait_message(message_id, ("delivered",))
    later = api.post(
        "/api/v1/messages",
        json={"title": "later", "channels": ["hook"], "send_at": LATER},
    ).json()["id"]
    old, recent = ids[:5], ids[5:]
    path = db_file(server)
    past = time.time() - 40 * DAY
    marks = ",".join(str(i) for i in [*old, later])
    rows(
        path,
        f"UPDATE message SET created_at = ?, finished_at = ? WHERE id IN ({marks})",
        past,
        past,
    )
    rows(
        path, "UPDATE message SET created_at = ? WHERE id = ?", past, recent[0]
    )  # finished just now
    rows(
        path,
        f"UPDATE mailbox SET updated_at = ? WHERE state = 'done' AND json_extract(payload, '$.message_id') "
        f"IN ({marks})",
        past,
    )
    ancient = (
        time.time() - 100 * DAY
    )  # alerts are kept 90 days; "other:1:1" is a node no one here judges
    rows(
        path,
        "INSERT INTO alert (rule, key, severity, state, message, first_at, last_at, resolved_at, count) "
        "VALUES ('disk_low', 'other:1:1/disk', 'critical', 'resolved', 'old', ?, ?, ?, 1), "
        "('disk_low', 'other:1:1/disk', 'critical', 'firing', 'old but firing', ?, ?, NULL, 1)",
        ancient,
        ancient,
        ancient,
        ancient,
        ancient,
    )

    statuses: list[int] = []
    sent: list[int] = []
    stop = threading.Event()

    def keep_sending():
        while not stop.is_set():
            answer = api.post(
                "/api/v1/messages", json={"title": "during purge", "channels": ["hook"]}
            )
            statuses.append(answer.status_code)
            if answer.status_code == 202:
                sent.append(answer.json()["id"])

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        until(lambda: len(sent) >= 5, 30, "sends under way")
        run = run_job(api, "retention_purge")
        until(lambda: len(sent) >= 10, 30, "sends going on after the purge")
    finally:
        stop.set()
        sender.join(10)

    assert run["outcome"] == "ok", run
    assert run["detail"]["removed"]["messages"] == 5 and run["detail"]["batches"] >= 3
    assert run["detail"]["removed"]["mailbox"] >= 5 and run["detail"]["removed"]["alerts"] == 1
    assert set(statuses) == {202}
    left = {r[0] for r in rows(path, "SELECT id FROM message")}
    assert not left & set(old) and {*recent, later} <= left
    assert rows(
        path, f"SELECT count(*) FROM delivery WHERE message_id IN ({','.join(map(str, old))})"
    ) == [(0,)]
    assert rows(
        path, f"SELECT count(*) FROM message_event WHERE message_id IN ({','.join(map(str, old))})"
    ) == [(0,)]
    assert rows(path, "SELECT message FROM alert") == [("old but firing",)]
    for message_id in sent:
        api.wait_message(message_id, ("delivered",))

    maintenance = run_job(api, "db_maintenance")
    assert maintenance["outcome"] == "ok" and maintenance["detail"]["integrity"] == "ok"

    created_today = len(sent) + 1  # and recent[1]: recent[0] was backdated
    stats = api.get("/api/v1/stats").json()["today"]
    assert stats["channels"]["hook"]["sent"] == created_today
    assert api.get("/api/v1/admin/stats").json()["today"]["deliveries"]["sent"] == created_today
    report = run_job(api, "daily_report")
    assert report["outcome"] == "ok" and report["detail"]["day"] == reports.previous_day(
        time.time()
    )


def test_retention_purge_removes_old_events_job_runs_supervisor_events_reports_and_audit_rows(
    server_factory, sink
):
    """Each kind past its own age goes; newer rows of the same kind, and a kept message, stay."""
    server = server_factory({"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true"})
    api = server.client(server.create_key())
    webhook(api, sink.url + "/in")
    message_id = api.post("/api/v1/messages", json={"title": "kept", "channels": ["hook"]}).json()[
        "id"
    ]
    api.wait_message(message_id, ("delivered",))
    assert run_job(api, "daily_report")["outcome"] == "ok"
    path = db_file(server)
    now = time.time()
    # (table, time column, days past its retention in supervisor.yaml's defaults)
    aged = {
        "message_event": ("at", 31),
        "job_run": ("started_at", 31),
        "supervisor_event": ("at", 31),
        "report": ("created_at", 401),
        "audit_log": ("at", 181),
    }
    until(lambda: rows(path, "SELECT count(*) FROM audit_log")[0][0], 30, "audit rows written")
    before = {}
    for table, (column, days) in aged.items():
        count, last = rows(path, f"SELECT count(*), max(id) FROM {table}")[0]
        assert count >= 1, f"{table} has no row to age"
        rows(path, f"UPDATE {table} SET {column} = ? WHERE id <= ?", now - days * DAY, last)
        before[table] = count
    fresh_supervisor_event = rows(
        path,
        "INSERT INTO supervisor_event (at, actor, event, detail, node) "
        "VALUES (?, 'janitor', 'started', '{}', 'test') "
        "RETURNING id",
        now,
    )[0][0]

    run = run_job(api, "retention_purge")
    assert run["outcome"] == "ok", run
    removed = run["detail"]["removed"]
    assert removed["events"] == before["message_event"]
    assert removed["job_runs"] == before["job_run"]
    assert removed["supervisor_events"] == before["supervisor_event"]
    assert removed["reports"] == before["report"]
    assert removed["audit"] == before["audit_log"]
    assert removed["messages"] == 0
    assert rows(path, "SELECT count(*) FROM report") == [(0,)]
    assert rows(path, "SELECT id FROM supervisor_event") == [(fresh_supervisor_event,)]
    assert rows(path, "SELECT count(*) FROM message_event WHERE at < ?", now) == [(0,)]
    assert rows(path, "SELECT id FROM message") == [(message_id,)]
    assert api.get(f"/api/v1/messages/{message_id}").json()["deliveries"][0]["status"] == "sent"
