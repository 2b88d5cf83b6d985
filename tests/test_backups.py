"""Backups: names and rotation, a consistent copy under write load, restore online and offline."""

from __future__ import annotations

import fcntl
import re
import sqlite3
import subprocess
import threading

import pytest
from support.ops import CONFIRM, db_file, rows, until, webhook

from messagepusher.operations.backups import BackupError, backup_name, sqlite_file, to_remove
from messagepusher.supervisor.config import load_settings

pytestmark = pytest.mark.xdist_group("heavy")


def test_backup_names_carry_the_utc_time_and_sort_by_it():
    assert backup_name(1795832410.68) == "messagepusher-20261128T022010.680Z.db"
    assert sorted([backup_name(2e9), backup_name(1e9)]) == [backup_name(1e9), backup_name(2e9)]


def test_rotation_removes_all_but_the_newest_and_leaves_other_files_alone():
    names = [backup_name(t) for t in (1e9, 2e9, 3e9)] + ["notes.txt"]
    assert to_remove(names, keep=2) == [backup_name(1e9)]


def test_postgresql_is_refused_with_a_pointer_to_pg_dump():
    settings = load_settings(environ={"MP_DATABASE__URL": "postgresql://mp@127.0.0.1/mp"})
    with pytest.raises(BackupError, match="pg_dump"):
        sqlite_file(settings)


def integrity(path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def counts(path) -> tuple[int, int]:
    """(messages, messages without any delivery): one commit writes a message with its deliveries."""
    return rows(
        path,
        "SELECT count(*), count(*) FILTER (WHERE id NOT IN (SELECT message_id FROM delivery)) "
        "FROM message",
    )[0]


def more_writes(statuses: list[int], n: int) -> None:
    target = len(statuses) + n
    until(lambda: len(statuses) >= target, 30, f"{n} more writes")


def test_a_backup_under_write_load_is_consistent_and_restores_online_and_offline(
    server_factory, sink
):
    server = server_factory({"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_BACKUP__KEEP": "2"})
    api = server.client(server.create_key())
    webhook(api, sink.url + "/in")
    statuses: list[int] = []
    stop = threading.Event()

    def keep_sending():
        while not stop.is_set():
            statuses.append(
                api.post(
                    "/api/v1/messages", json={"title": "load", "channels": ["hook"]}
                ).status_code
            )

    senders = [threading.Thread(target=keep_sending) for _ in range(3)]
    for sender in senders:
        sender.start()
    taken = []
    try:
        until(lambda: statuses.count(202) >= 30, 30, "a write load")
        for _ in range(3):
            made = api.post("/api/v1/admin/backups")
            assert made.status_code == 201, made.text
            taken.append(made.json()["name"])
            more_writes(statuses, 10)
    finally:
        stop.set()
        for sender in senders:
            sender.join(10)
    assert set(statuses) <= {202, 503}

    listed = [b["name"] for b in api.get("/api/v1/admin/backups").json()["items"]]
    assert listed == taken[:0:-1], "keep=2 leaves the two newest, newest first"
    chosen = server.data_dir / "backups" / taken[1]
    assert integrity(chosen) == "ok"
    in_backup, without_deliveries = counts(chosen)
    assert without_deliveries == 0 and 30 <= in_backup < counts(db_file(server))[0]

    during: list[int] = []
    stop.clear()

    def send_during_restore():
        while not stop.is_set():
            during.append(
                api.post(
                    "/api/v1/messages", json={"title": "in restore", "channels": ["hook"]}
                ).status_code
            )

    sender = threading.Thread(target=send_during_restore)
    sender.start()
    restored = api.post(f"/api/v1/admin/backups/{taken[1]}/restore", headers=CONFIRM)
    stop.set()
    sender.join(10)
    assert restored.status_code == 200, restored.text
    assert set(during) <= {202, 503}, "new work is refused with 503 while restoring, never failed"
    restored_count = counts(db_file(server))[0]
    assert (
        in_backup <= restored_count <= in_backup + during.count(202)
        and integrity(db_file(server)) == "ok"
    )
    assert api.get("/readyz").status_code == 200
    after = api.post("/api/v1/messages", json={"title": "after restore", "channels": ["hook"]})
    assert after.status_code == 202, after.text
    assert api.wait_message(after.json()["id"], ("delivered",))["status"] == "delivered"
    assert (
        api.post(
            "/api/v1/admin/backups/messagepusher-20000101T000000.000Z.db/restore", headers=CONFIRM
        ).status_code
        == 404
    )

    listing = server.cli("backup", "list")
    assert listing.returncode == 0 and taken[1] in listing.stdout
    refused = server.cli("backup", "restore", taken[1])
    assert refused.returncode == 1 and "a server is running" in refused.stderr
    api.post(
        "/api/v1/messages", json={"title": "lost by the offline restore", "channels": ["hook"]}
    )
    assert server.stop() == 0
    done = server.cli("backup", "restore", taken[1])
    assert done.returncode == 0, done.stderr
    assert counts(db_file(server))[0] == in_backup and integrity(db_file(server)) == "ok"
    server.start()
    assert api.get("/readyz").status_code == 200


def test_an_online_restore_rolls_back_the_data_but_keeps_the_audit_trail(server_factory):
    """Who did what since the backup (the restore included) is still in the audit log after it."""
    server = server_factory()
    api = server.client(server.create_key())
    taken = api.post("/api/v1/admin/backups", headers=CONFIRM)
    assert taken.status_code == 201, taken.text
    name = taken.json()["name"]
    created = webhook(api, "https://hooks.example.com/after-the-backup", name="after-backup")

    def actions() -> list[str]:
        items = api.get("/api/v1/admin/audit?limit=200").json()["items"]
        return [f"{r['action']} {r['outcome']}" for r in items]

    until(lambda: "POST /api/v1/channels ok" in actions(), what="the channel audit row written")
    restored = api.post(f"/api/v1/admin/backups/{name}/restore", headers=CONFIRM)
    assert restored.status_code == 200, restored.text
    assert api.get(f"/api/v1/channels/{created['id']}").status_code == 404  # the data rolled back
    restore = "POST /api/v1/admin/backups/{name}/restore ok"
    until(lambda: restore in actions(), what="the restore audit row written")
    kept = actions()
    assert "POST /api/v1/channels ok" in kept and "POST /api/v1/admin/backups ok" in kept, kept
    ids = [r["id"] for r in api.get("/api/v1/admin/audit?limit=200").json()["items"]]
    assert len(ids) == len(set(ids)), "no audit id used twice"


def test_backup_create_on_the_command_line_copies_a_running_servers_data(server_factory, sink):
    server = server_factory({"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true"})
    api = server.client(server.create_key())
    webhook(api, sink.url + "/b", name="b")
    r = api.post("/api/v1/messages", json={"title": "kept in the backup", "channels": ["b"]})
    assert r.status_code == 202, r.text
    done = server.cli("backup", "create")
    assert done.returncode == 0, done.stderr
    created = re.fullmatch(r"created (\S+) \((\d+) bytes\)", done.stdout.strip())
    assert created, done.stdout
    name = created.group(1)
    listing = server.cli("backup", "list")
    assert listing.returncode == 0 and name in listing.stdout, (name, listing.stdout)
    copy = server.data_dir / "backups" / name
    assert copy.is_file(), (name, sorted((server.data_dir / "backups").iterdir()))
    with sqlite3.connect(copy) as conn:
        titles = [t for (t,) in conn.execute("SELECT title FROM message")]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert "kept in the backup" in titles


def test_a_server_refuses_to_start_while_a_restore_holds_the_serving_lock(server_factory):
    server = server_factory(start=False)
    lock_path = db_file(server).with_name(db_file(server).name + "-serving.lock")
    with open(lock_path, "a+") as restore:
        fcntl.flock(restore, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what an offline restore takes
        refused = subprocess.run(
            server.command("serve"), env=server.env, capture_output=True, text=True, timeout=60
        )
        assert refused.returncode == 1, (refused.returncode, refused.stderr[-2000:])
        assert "a restore is running on" in refused.stderr
        assert "start the server when it has finished" in refused.stderr
    server.start()  # the restore let go: the same start succeeds
    assert server.client(None).get("/healthz").status_code == 200
