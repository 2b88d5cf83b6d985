"""The SQL dialect: the same `?` statements, locks and maintenance on SQLite and PostgreSQL.

On a real SQLite file and a fresh PostgreSQL schema.
"""

from __future__ import annotations

import pathlib
import re

import pytest
from support.databases import database_on

from messagepusher.supervisor.db import execute, select_rows, write_transaction
from messagepusher.supervisor.dialect import PostgresDialect, SqliteDialect

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """This file's database tests run on SQLite and on PostgreSQL."""
    yield from database_on(request, tmp_path)


COLUMNS = ("key", "token", "expires_at", "lease_until", "updated_at")


def make_token(key: str) -> None:
    execute(
        "INSERT INTO access_token (key, token, expires_at, lease_until, updated_at) "
        "VALUES (?, '', 0, 0, 0)",
        (key,),
    )


def keys() -> list[str]:
    return [row[0] for row in select_rows("SELECT key FROM access_token ORDER BY key")]


def test_postgres_placeholders_become_pyformat_outside_quotes_and_percent_signs_are_doubled():
    sql = "SELECT id FROM t WHERE a = ? AND b LIKE 'x%?' AND \"c?\" = ? AND d LIKE '50%'"
    assert PostgresDialect(None).sql(sql) == (
        "SELECT id FROM t WHERE a = %s AND b LIKE 'x%%?' AND \"c?\" = %s AND d LIKE '50%%'"
    )


def test_sqlite_takes_the_statement_as_written():
    sql = "SELECT id FROM t WHERE a = ? AND b LIKE 'x%?'"
    assert SqliteDialect(None).sql(sql) == sql


def test_a_percent_sign_and_a_question_mark_in_literals_are_data_on_both_databases(db):
    make_token("50%-off?")
    make_token("plain")
    assert select_rows(
        "SELECT key FROM access_token WHERE key LIKE '%-off?' AND key <> ?", ("x",)
    ) == [("50%-off?",)]
    assert select_rows("SELECT key FROM access_token WHERE key = '50%-off?'") == [("50%-off?",)]


def test_for_update_locks_on_postgres_and_is_the_plain_select_on_sqlite(db):
    select = "SELECT key FROM access_token ORDER BY key"
    locking = db.dialect.for_update(select)
    assert (locking != select) == (db.dialect.name == "postgres")
    make_token("a")
    with write_transaction(db):
        assert len(select_rows(locking)) == 1


def test_locks_taken_in_a_write_transaction_and_for_a_session_are_usable_on_both(db):
    with write_transaction(db):
        db.dialect.lock_in_transaction(1, 2)
        db.dialect.serialize_inserts("access_token")
        make_token("locked")
    with db.dialect.session_lock(42):
        assert execute("UPDATE access_token SET updated_at = ? WHERE key = ?", (1.0, "locked")) == 1


def test_insert_ignore_many_skips_rows_that_break_a_unique_key(db):
    rows = [("dup", "", 0, 0, 0), ("dup", "", 0, 0, 0), ("other", "", 0, 0, 0)]
    with db.atomic():
        db.dialect.insert_ignore_many("access_token", COLUMNS, rows)
    assert keys() == ["dup", "other"]


def test_schema_questions_are_answered_in_the_current_schema(db):
    assert db.dialect.table_exists("access_token") and not db.dialect.table_exists("no_such")
    assert db.dialect.columns("access_token") == set(COLUMNS)


def test_maintenance_checks_and_vacuums_sqlite_and_analyzes_postgres(db):
    asked: list[tuple[int, int]] = []
    detail = db.dialect.maintain(lambda free, pages: asked.append((free, pages)) or True)
    if db.dialect.name == "sqlite":
        assert detail["integrity"] == "ok" and detail["vacuumed"] and len(asked) == 1
    else:
        assert detail["analyze"] == "done" and detail["integrity"] is None and asked == []


def test_no_module_but_the_dialect_and_the_opener_asks_which_engine_it_has():
    engine_test = re.compile(r"is_sqlite|PostgresqlDatabase|SqliteDatabase")
    allowed = {ROOT / "supervisor" / "dialect.py", ROOT / "supervisor" / "db.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for folder in (
            "http",
            "actors",
            "operations",
            "messages",
            "outbound",
            "accounts",
            "supervisor",
        )
        for path in (ROOT / folder).rglob("*.py")
        if path not in allowed and engine_test.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
