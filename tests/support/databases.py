"""Migrated databases for tests in this process: a SQLite file, or a fresh PostgreSQL schema.

Plain functions rather than fixtures, so that a file run with `--noconftest` (tests/mutation.py)
can still build its own `db` fixture from them.
"""

from __future__ import annotations

from collections.abc import Iterator

import peewee
import pytest

from messagepusher.supervisor.db import PostgresDatabase, open_database
from messagepusher.supervisor.migrations import migrate


def migrated_database(url: str) -> Iterator[peewee.Database]:
    """Open, connect and migrate the database at `url`; yield it; close it (and every pooled
    PostgreSQL connection, so that its schema can be dropped after)."""
    database = open_database(url)
    database.connect()
    migrate(database)
    yield database
    database.close()
    if isinstance(database, PostgresDatabase):
        database.close_all()


def database_on(request: pytest.FixtureRequest, tmp_path) -> Iterator[peewee.Database]:
    """For a fixture parametrized ["sqlite", "postgres"]: a migrated SQLite file in tmp_path,
    or a fresh schema from the `postgres_url` fixture (which skips or fails without PostgreSQL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'unit.db'}"
    else:
        url, _schema = request.getfixturevalue("postgres_url")
    yield from migrated_database(url)
