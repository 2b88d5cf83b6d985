"""Schema migrations: from scratch, from version 1, idempotent, on SQLite and PostgreSQL."""

from __future__ import annotations

from messagepusher.supervisor.db import make_database
from messagepusher.supervisor.migrations import LATEST, MIGRATIONS, current_version, migrate
from messagepusher.supervisor.models import ALL_MODELS, database


def steps_from(first: int) -> list[int]:
    """The step numbers from `first` on: numbers are reserved per branch, so there may be gaps."""
    return [number for number, _, _ in MIGRATIONS if number >= first]


def shape(db) -> dict[str, list[str]]:
    return {t: sorted(c.name for c in db.get_columns(t)) for t in sorted(db.get_tables())}


def fresh(url: str):
    db = make_database(url)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    return db


def test_a_new_database_is_migrated_to_the_latest_version_with_every_table(tmp_path):
    db = fresh(f"sqlite:///{tmp_path / 'a.db'}")
    assert migrate(db) == steps_from(1)
    assert current_version(db) == LATEST
    assert {m._meta.table_name for m in ALL_MODELS} <= set(db.get_tables())
    assert migrate(db) == []
    db.close()


def test_a_version_1_database_upgrades_in_place_to_the_same_schema_as_a_new_one(tmp_path):
    old = fresh(f"sqlite:///{tmp_path / 'old.db'}")
    assert migrate(old, target=1) == [1]
    old.execute_sql(
        'INSERT INTO "user" (username, password_hash, role, disabled, display_name, email, preferences,'
        " totp_enabled, created_at, updated_at) VALUES ('kept', 'x', 'user', 0, '', '', '{}', 0, 1, 1)"
    )
    assert current_version(old) == 1
    assert migrate(old) == steps_from(2)
    upgraded = shape(old)
    assert old.execute_sql('SELECT username FROM "user"').fetchall() == [("kept",)]
    old.close()
    new = fresh(f"sqlite:///{tmp_path / 'new.db'}")
    migrate(new)
    assert upgraded == shape(new)
    new.close()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    db = fresh(f"sqlite:///{tmp_path / 'w.db'}")
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute_sql("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    db.close()


def test_the_schema_migrates_on_postgresql_from_scratch_and_from_version_1(postgres_url):
    url, schema = postgres_url
    db = fresh(url)
    assert migrate(db, target=1) == [1]
    assert migrate(db) == steps_from(2)
    tables = set(db.get_tables(schema=schema))
    assert {m._meta.table_name for m in ALL_MODELS} <= tables
    assert "mailbox_claimable" in {i.name for i in db.get_indexes("mailbox", schema=schema)}
    db.close()


def _drop_totp_last_step(db) -> None:
    """Make the user table as a release before migration 5 left it: without totp_last_step."""
    db.execute_sql('ALTER TABLE "user" DROP COLUMN totp_last_step')
    db.execute_sql(
        'INSERT INTO "user" (username, password_hash, role, disabled, display_name, email, preferences,'
        " totp_enabled, created_at, updated_at) VALUES ('kept', 'x', 'user', FALSE, '', '', '{}', FALSE, 1, 1)"
    )


def test_migration_5_adds_the_totp_last_step_column_to_an_older_user_table_on_sqlite(tmp_path):
    db = fresh(f"sqlite:///{tmp_path / 'v4.db'}")
    assert migrate(db, target=4) == [1, 2, 3, 4]
    _drop_totp_last_step(db)
    assert migrate(db) == steps_from(5)
    assert "totp_last_step" in {c.name for c in db.get_columns("user")}
    assert db.execute_sql('SELECT username, totp_last_step FROM "user"').fetchall() == [
        ("kept", None)
    ]
    assert migrate(db) == []
    db.close()


def test_migration_5_adds_the_totp_last_step_column_to_an_older_user_table_on_postgresql(
    postgres_url,
):
    url, schema = postgres_url
    db = fresh(url)
    assert migrate(db, target=4) == [1, 2, 3, 4]
    _drop_totp_last_step(db)
    assert migrate(db) == steps_from(5)
    assert "totp_last_step" in {c.name for c in db.get_columns("user", schema=schema)}
    assert db.execute_sql('SELECT username, totp_last_step FROM "user"').fetchall() == [
        ("kept", None)
    ]
    db.close()
