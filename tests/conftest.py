"""Shared fixtures: the real server as a subprocess, a webhook sink, PostgreSQL access."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from fakes.sink import Sink
from support.databases import migrated_database
from support.server import ServerProcess

POSTGRES_URL = os.environ.get("MP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


GROUP_MARK = re.compile(r"xdist_group\(\s*[\"'](\w+)[\"']")


def file_groups(root: Path) -> dict[str, str]:
    """{test file as in a node id: the xdist_group its source names}, for files that name one."""
    groups = {}
    for path in sorted((root / "tests").rglob("test_*.py")):
        found = GROUP_MARK.findall(path.read_text(errors="replace"))
        if found:
            groups[path.relative_to(root).as_posix()] = found[0]
    return groups


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup` by file: a file's tests stay on one worker, files of a group together.

    xdist's own loadgroup renames node ids, which pytest 9 no longer allows, so every test would
    be sent on its own (and every module-scoped server start on both workers). Here a file whose
    source names an xdist_group joins that group: the "heavy" files run one after another on one
    worker, never beside each other; every other file is a group of its own.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    groups = file_groups(Path(config.rootpath))

    class FileGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::")[0]
            return groups.get(path, path)

    return FileGroupScheduling(config, log)


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def server_factory(tmp_path):
    started: list[ServerProcess] = []

    def make(
        env: dict[str, str] | None = None, config=None, data_dir=None, start: bool = True
    ) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / f"data{len(started)}", env, config)
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        try:
            server.stop(timeout=15)
        except subprocess.TimeoutExpired:  # a test that left it hung still gets it killed
            server.kill9()


@pytest.fixture
def private_server(server_factory):
    """A server allowed to reach 127.0.0.1 (every local fake lives there)."""
    return server_factory(
        {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_RETRY__BASE_DELAY_SECONDS": "0.2"}
    )


@pytest.fixture
def postgres_url():
    """A fresh schema on the local PostgreSQL; skips loudly unless MP_REQUIRE_POSTGRES=1."""
    import psycopg2

    try:
        conn = psycopg2.connect(POSTGRES_URL, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        if os.environ.get("MP_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(
            f"PostgreSQL NOT TESTED: {POSTGRES_URL} unreachable ({exc}); set MP_REQUIRE_POSTGRES=1 to fail instead"
        )
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}", schema
    with conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


@pytest.fixture
def db(tmp_path):
    """A migrated SQLite database in tmp_path, bound to the models, for tests in this process."""
    yield from migrated_database(f"sqlite:///{tmp_path / 'unit.db'}")
