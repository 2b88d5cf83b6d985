"""A worker process for the mailbox concurrency tests: claims, acks, logs what it acked.

Run as `python mailbox_worker.py URL RECIPIENT BATCH LOG`; it says "ready" and waits for "go"
on stdin, then claims its first batch, says "claimed" and waits for "continue" before it acks
(so the test can make sure every worker holds work at once).
"""

from __future__ import annotations

import sys

from messagepusher.supervisor.db import open_database, write_transaction
from messagepusher.supervisor.mailbox import Mailbox, owner_for

# Far longer than the test: no lease expires, so no entry may ever be claimed twice.
LEASE_SECONDS = 600.0


def main(url: str, recipient: str, batch: int, log_path: str) -> int:
    db = open_database(url)
    db.connect()
    mailbox = Mailbox(db)
    owner = owner_for("mailbox_worker")
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    lost = 0
    entries = mailbox.claim(recipient, batch, LEASE_SECONDS, owner)
    print("claimed", flush=True)
    if sys.stdin.readline().strip() != "continue":
        return 2
    with open(log_path, "a") as log:
        while entries:
            with write_transaction(db):  # as a pool actor writes a batch back: one transaction
                acked = [e.id for e in entries if mailbox.ack(e.id, owner)]
            lost += len(entries) - len(acked)
            log.write("".join(f"{i}\n" for i in acked))
            log.flush()
            entries = mailbox.claim(recipient, batch, LEASE_SECONDS, owner)
    db.close()
    if lost:
        print(f"{lost} acks found their lease gone", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
