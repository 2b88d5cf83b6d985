"""Cluster stamps on SQLite (a file beside the database, read with a stat) and on PostgreSQL
(the `cluster_stamp` table). That a key revoked through one server is refused by another is
in test_cluster_state.py."""

from __future__ import annotations

import os

import pytest
from support.databases import database_on, migrated_database

from messagepusher.supervisor import cluster_stamps
from messagepusher.supervisor.db import database, select_rows, write_transaction


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    yield from database_on(request, tmp_path)


def stored(name: str) -> int:
    rows = select_rows("SELECT value FROM cluster_stamp WHERE name = ?", (name,))
    return rows[0][0] if rows else 0


def test_a_stamp_starts_at_zero_and_moves_on_with_each_bump_in_the_table_too(db):
    assert cluster_stamps.read("credentials") == 0
    cluster_stamps.bump("credentials")
    cluster_stamps.bump("credentials")
    assert cluster_stamps.read("credentials") == 2
    assert stored("credentials") == 2  # the table keeps counting on SQLite as well
    assert cluster_stamps.read("other") == 0


def test_a_bump_inside_a_transaction_is_refused_and_changes_nothing(db):
    refused = pytest.raises(cluster_stamps.StampInTransaction, match="after the change commits")
    with refused, write_transaction():
        cluster_stamps.bump("credentials")
    assert (cluster_stamps.read("credentials"), stored("credentials")) == (0, 0)


def test_on_sqlite_every_process_on_the_host_reads_the_file_beside_the_database(tmp_path):
    for _db in migrated_database(f"sqlite:///{tmp_path / 'unit.db'}"):
        path = database.obj.dialect.host_stamp_path("credentials")
        assert path == os.path.realpath(tmp_path / "unit.db") + "-stamp-credentials"
        cluster_stamps.bump("credentials")
        with open(path, "ab") as other_process:  # another process's bump is one appended byte
            other_process.write(b".")
        assert (cluster_stamps.read("credentials"), stored("credentials")) == (2, 1)
        os.remove(path)  # a deleted file reads as a change, so caches are dropped
        assert cluster_stamps.read("credentials") == 0


def test_postgres_keeps_no_file_its_hosts_could_not_share(postgres_url):
    url, _schema = postgres_url
    for _db in migrated_database(url):
        assert database.obj.dialect.host_stamp_path("credentials") is None
        cluster_stamps.bump("credentials")
        assert cluster_stamps.read("credentials") == stored("credentials") == 1
