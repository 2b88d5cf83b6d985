"""Mailbox throughput: put+claim+ack entries/s on one SQLite file, 1 and 2 processes, against Huey.

Run `python bench/mailbox.py`: one table, each figure with its ratio to Huey's SqliteStorage.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time

PAYLOAD = {"delivery_id": 123456, "message_id": 654321}
HUEY_PAYLOAD = b'{"delivery_id":123456,"message_id":654321}'
TARGET = 5_000  # entries/s, one process (issue 3)


def mailbox_worker(
    url: str, share: int, put_batch: int, claim_batch: int, ack: str, start, times
) -> None:
    """One process: put its share in batches, draining what is claimable after each batch."""
    from messagepusher.supervisor.db import open_database, write_transaction
    from messagepusher.supervisor.mailbox import Mailbox, NewEntry, owner_for

    db = open_database(url)
    db.connect()
    mailbox = Mailbox(db)
    owner = owner_for("bench")
    start.wait()
    began = time.monotonic()
    for first in range(0, share, put_batch):
        n = min(put_batch, share - first)
        mailbox.put_many(NewEntry("channel_pool", "send", PAYLOAD) for _ in range(n))
        while entries := mailbox.claim("channel_pool", claim_batch, 60.0, owner):
            if ack == "ack_many":
                mailbox.ack_many([e.id for e in entries], owner)
            else:  # as a pool actor writes back a batch: one ack per entry, one transaction
                with write_transaction(db):
                    for e in entries:
                        mailbox.ack(e.id, owner)
    times.put((began, time.monotonic()))
    db.close()


def huey_storage(path: str):
    """Huey's SqliteStorage at the mailbox's durability: WAL with synchronous=NORMAL."""
    from huey.storage import SqliteStorage

    class Storage(SqliteStorage):
        def _create_connection(self):
            conn = super()._create_connection()
            conn.execute("pragma synchronous=NORMAL")
            return conn

    return Storage(name="bench", filename=path)


def huey_worker(
    path: str, share: int, put_batch: int, _claim_batch: int, _ack: str, start, times
) -> None:
    """The same rounds through Huey: enqueue one at a time, dequeue one at a time."""
    storage = huey_storage(path)
    start.wait()
    began = time.monotonic()
    for first in range(0, share, put_batch):
        for _ in range(min(put_batch, share - first)):
            storage.enqueue(HUEY_PAYLOAD)
        while storage.dequeue() is not None:
            pass
    times.put((began, time.monotonic()))


def run_once(kind: str, procs: int, args: argparse.Namespace, ack: str = "ack_many") -> float:
    """Entries/s for one run on a fresh file: all entries over the wall time of all workers."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="mp-bench-") as tmp:
        path = os.path.join(tmp, "bench.db")
        if kind == "mailbox":
            from messagepusher.supervisor.db import open_database
            from messagepusher.supervisor.migrations import migrate

            target, worker = f"sqlite:///{path}", mailbox_worker
            db = open_database(target)
            db.connect()
            migrate(db)
            db.close()
        else:
            target, worker = path, huey_worker
            huey_storage(path)  # create the tables before the clock starts
        start, times = ctx.Barrier(procs), ctx.Queue()
        shares = [
            args.entries // procs + (1 if i < args.entries % procs else 0) for i in range(procs)
        ]
        workers = [
            ctx.Process(
                target=worker,
                args=(target, share, args.put_batch, args.claim_batch, ack, start, times),
            )
            for share in shares
        ]
        for w in workers:
            w.start()
        spans = [times.get(timeout=600) for _ in workers]
        for w in workers:
            w.join()
            if w.exitcode != 0:
                raise SystemExit(f"a {kind} worker exited with {w.exitcode}")
        check_all_done(kind, path, args.entries)
    return args.entries / (max(end for _, end in spans) - min(began for began, _ in spans))


def check_all_done(kind: str, path: str, entries: int) -> None:
    conn = sqlite3.connect(path)
    try:
        if kind == "mailbox":
            done = conn.execute("SELECT COUNT(*) FROM mailbox WHERE state = 'done'").fetchone()[0]
            left = conn.execute("SELECT COUNT(*) FROM mailbox WHERE state != 'done'").fetchone()[0]
        else:
            done, left = entries, conn.execute("SELECT COUNT(*) FROM task").fetchone()[0]
    finally:
        conn.close()
    if done != entries or left:
        raise SystemExit(
            f"{kind}: {done} of {entries} entries done, {left} left: the run is invalid"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--put-batch", type=int, default=500)
    parser.add_argument("--claim-batch", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median is shown")
    args = parser.parse_args()

    rows = [
        ("MessagePusher mailbox, ack_many", "mailbox", 1, "ack_many"),
        ("MessagePusher mailbox, ack_many", "mailbox", 2, "ack_many"),
        ("MessagePusher mailbox, ack per entry", "mailbox", 1, "ack"),
        ("MessagePusher mailbox, ack per entry", "mailbox", 2, "ack"),
        ("Huey SqliteStorage enqueue+dequeue", "huey", 1, ""),
        ("Huey SqliteStorage enqueue+dequeue", "huey", 2, ""),
    ]
    results = {}
    for label, kind, procs, ack in rows:
        runs = [run_once(kind, procs, args, ack) for _ in range(args.repeat)]
        results[(label, procs)] = (statistics.median(runs), min(runs), max(runs))

    print(
        f"Mailbox put+claim+ack on one SQLite file (WAL, synchronous=NORMAL): {args.entries:,} entries,"
    )
    print(
        f"puts in batches of {args.put_batch}, claims of {args.claim_batch}; median of {args.repeat} runs."
    )
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, "
        f"{platform.machine()}"
    )
    print()
    header = f"{'run':<40} {'procs':>5} {'entries/s':>10} {'min..max':>15} {'vs Huey':>8}"
    print(header)
    print("-" * len(header))
    for label, _kind, procs, _ack in rows:
        median, low, high = results[(label, procs)]
        huey = results[("Huey SqliteStorage enqueue+dequeue", procs)][0]
        spread = f"{low:,.0f}..{high:,.0f}"
        print(f"{label:<40} {procs:>5} {median:>10,.0f} {spread:>15} {median / huey:>7.2f}x")
    single = results[("MessagePusher mailbox, ack_many", 1)][0]
    verdict = "met" if single >= TARGET else "NOT MET"
    print()
    print(f"target >= {TARGET:,} entries/s in one process (ack_many): {verdict} ({single:,.0f})")
    return 0 if single >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
