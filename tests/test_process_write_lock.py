"""Writers of different processes on one SQLite file queue on a lock beside it (supervisor/db.py).

Real processes, a real file: the other process probes the lock without blocking, so nothing
here waits on a timer to see that it is held.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import peewee
import pytest
from support.ops import until

from messagepusher.supervisor.db import (
    ProcessWriteLock,
    SerializedSqliteDatabase,
    make_database,
)

PROBE = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("held")
    else:
        print("free")
    """
)

HOLDER = textwrap.dedent(
    """
    import sys, time
    from messagepusher.supervisor.db import make_database, write_transaction
    db = make_database("sqlite:///" + sys.argv[1])
    db.connect()
    db.execute_sql("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    with write_transaction(db):
        db.execute_sql("INSERT INTO t VALUES (1)")
        print("holding", flush=True)
        time.sleep(600)
    """
)


def probe(lock_file) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(lock_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def db(tmp_path):
    database = make_database(f"sqlite:///{tmp_path / 'shared.db'}")
    database.connect()
    database.execute_sql("CREATE TABLE t (n INTEGER)")
    yield database
    database.close()


def test_another_process_sees_the_lock_held_for_a_whole_transaction_and_free_after(db, tmp_path):
    lock_file = tmp_path / "shared.db-writer"
    with db.atomic():
        db.execute_sql("INSERT INTO t VALUES (1)")
        assert probe(lock_file) == "held"
        with db.atomic():  # a savepoint inside it keeps the one hold
            db.execute_sql("INSERT INTO t VALUES (2)")
        assert probe(lock_file) == "held"
    assert probe(lock_file) == "free"
    db.execute_sql("INSERT INTO t VALUES (3)")  # a lone write takes it for its statement
    assert probe(lock_file) == "free"


def test_a_rolled_back_or_failed_transaction_lets_go_of_the_lock(db, tmp_path):
    with pytest.raises(RuntimeError), db.atomic():
        db.execute_sql("INSERT INTO t VALUES (1)")
        raise RuntimeError("the caller's error")
    assert probe(tmp_path / "shared.db-writer") == "free"
    assert db.execute_sql("SELECT count(*) FROM t").fetchone() == (0,)


def test_two_database_objects_of_one_process_share_one_counted_hold(db, tmp_path):
    other = make_database(f"sqlite:///{tmp_path / 'shared.db'}")
    assert other._process_lock is db._process_lock
    lock = ProcessWriteLock.for_file(str(tmp_path / "shared.db"))
    lock.acquire()
    with db.atomic():
        db.execute_sql("INSERT INTO t VALUES (1)")
    assert probe(tmp_path / "shared.db-writer") == "held"  # the outer hold is still there
    lock.release()
    assert probe(tmp_path / "shared.db-writer") == "free"
    other.close()


def test_a_writer_killed_while_holding_it_frees_it_for_the_next_at_once(db, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "shared.db")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert probe(tmp_path / "shared.db-writer") == "held"
        wrote = threading.Event()

        def write() -> None:
            with db.atomic():
                db.execute_sql("INSERT INTO t VALUES (2)")
            wrote.set()

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        holder.kill()
        holder.wait(10)
        until(wrote.is_set, 10, "the waiting writer got the lock once the holder died")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
    # The killed holder's uncommitted row is gone; the waiting writer's is there.
    assert db.execute_sql("SELECT n FROM t").fetchall() == [(2,)]


def test_the_lock_times_count_each_hold_its_wait_and_its_length_and_no_read(tmp_path):
    # The clock is read when a writer asks, when it has the lock and when it lets go; a
    # read takes no reading (a fourth reading for the two writes would end the iterator).
    readings = iter([10.0, 10.25, 11.0, 20.0, 20.0, 20.5])
    db = SerializedSqliteDatabase(str(tmp_path / "timed.db"), clock=lambda: next(readings))
    heard = []
    db.lock_times.observer = lambda waited, held: heard.append((waited, held))
    db.connect()
    with db.atomic():
        db.execute_sql("CREATE TABLE t (n INTEGER)")
        with db.atomic():  # a savepoint inside the transaction is part of its one hold
            db.execute_sql("INSERT INTO t VALUES (1)")
    assert db.execute_sql("SELECT count(*) FROM t").fetchone() == (1,)
    db.execute_sql("INSERT INTO t VALUES (2)")  # a lone write is a hold of its own
    db.close()
    assert heard == [(0.25, 0.75), (0.0, 0.5)]
    times = db.lock_times
    assert (times.waited_seconds, times.held_seconds, times.holds) == (0.25, 1.25, 2)


def test_every_thread_writes_on_one_connection_and_reads_outside_a_transaction_on_its_own(db):
    def connections_in(thread_name: str) -> dict[str, object]:
        seen: dict[str, object] = {}

        def run() -> None:
            seen["read"] = db.connection()
            with db.atomic():
                seen["write"] = db.connection()
                with db.atomic():  # a savepoint stays on the writer
                    seen["savepoint"] = db.connection()
                db.execute_sql("INSERT INTO t VALUES (1)")
            seen["after"] = db.connection()

        thread = threading.Thread(target=run, name=thread_name)
        thread.start()
        thread.join(30)
        return seen

    first, second = connections_in("first"), connections_in("second")
    assert first["write"] is second["write"] is first["savepoint"] is second["savepoint"]
    assert first["read"] is first["after"] and first["read"] is not first["write"]
    assert second["read"] is not first["read"] and second["read"] is not second["write"]
    # Both threads' rows were committed through it. Closing the database closes the
    # writer too; the next transaction opens a new one.
    assert db.execute_sql("SELECT count(*) FROM t").fetchone() == (2,)
    db.close()
    with db.atomic():
        assert db.connection() is not first["write"]
        db.execute_sql("INSERT INTO t VALUES (3)")
    assert db.execute_sql("SELECT count(*) FROM t").fetchone() == (3,)


def test_a_failed_begin_gives_the_thread_its_own_connection_and_the_lock_back(db, tmp_path):
    own = db.connection()
    with pytest.raises(peewee.OperationalError):
        db.begin("NOT A LOCK TYPE")
    assert db.connection() is own
    assert probe(tmp_path / "shared.db-writer") == "free"
    with db.atomic():
        db.execute_sql("INSERT INTO t VALUES (1)")
        with pytest.raises(peewee.OperationalError):
            db.begin()  # BEGIN inside a transaction: SQLite refuses, the outer one goes on
        assert db.connection() is not own
    assert db.connection() is own
    assert db.execute_sql("SELECT count(*) FROM t").fetchone() == (1,)
    assert probe(tmp_path / "shared.db-writer") == "free"


def test_the_lock_times_observer_hears_a_hold_once_the_lock_is_let_go(db, tmp_path):
    heard = []
    db.lock_times.observer = lambda waited, held: heard.append(probe(tmp_path / "shared.db-writer"))
    with db.atomic():
        db.execute_sql("INSERT INTO t VALUES (1)")
    db.execute_sql("INSERT INTO t VALUES (2)")
    assert heard == ["free", "free"]
