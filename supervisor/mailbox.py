"""Durable mailboxes: one table of work items with leases, retries and dead letters.

The SQL is the same on SQLite and PostgreSQL but for the claim's row locks and the
transaction that wraps it, which the database's dialect (`supervisor/dialect.py`) supplies.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import peewee
import psutil

from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import MailboxEntry
from messagepusher.supervisor.retry import RetryPolicy

log = logging.getLogger(__name__)

CLAIMABLE = ("ready", "failed", "leased")
FINISHED = ("done", "dead")


@dataclass
class Entry:
    """A claimed work item, as its handler sees it."""

    id: int
    recipient: str
    kind: str
    payload: dict[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    user_id: int | None = None


@dataclass
class NewEntry:
    recipient: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 3
    available_at: float | None = None
    dedupe_key: str | None = None
    max_attempts: int | None = None
    user_id: int | None = None


def _node_id() -> str:
    """host:pid:start-time — unique per process, and recognisable as dead after a kill -9."""
    proc = psutil.Process()
    return f"{socket.gethostname()}:{os.getpid()}:{int(proc.create_time())}"


NODE_ID = _node_id()


def owner_for(actor_name: str, incarnation: int = 1) -> str:
    """Lease owner of one incarnation of an actor in this process: host:pid:start/actor#n."""
    return f"{NODE_ID}/{actor_name}#{incarnation}"


def same_actor_here(owner: str, other: str) -> bool:
    """True when both owners are incarnations of one actor in one process."""
    return owner.split("#", 1)[0] == other.split("#", 1)[0]


def owner_is_dead(owner: str) -> bool:
    """True when `owner` was a process on this host that no longer runs.

    Owners on other hosts are never judged here: their leases simply expire.
    """
    node = owner.split("/", 1)[0]
    try:
        host, pid, started = node.split(":")
        pid_n, started_n = int(pid), int(started)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    try:
        return int(psutil.Process(pid_n).create_time()) != started_n
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return True


INSERT_COLUMNS = (
    "recipient",
    "kind",
    "payload",
    "priority",
    "state",
    "available_at",
    "attempts",
    "max_attempts",
    "dedupe_key",
    "user_id",
    "created_at",
    "updated_at",
)

# Puts and acks are the per-entry hot paths: a fixed statement costs a tenth of what
# building the same statement with peewee's query builder does.
ACK = """
    UPDATE mailbox SET state = 'done', lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
     WHERE id IN ({ids}) AND state = 'leased' AND lease_owner = ?"""


# The claimable ids are locked, skipping rows another claim holds, where the dialect has row locks.
CLAIMABLE_IDS = """
    SELECT id FROM mailbox
     WHERE recipient = ? AND state IN ('ready', 'failed', 'leased') AND available_at <= ?
     ORDER BY priority DESC, id
     LIMIT ?"""
CLAIM = """
    UPDATE mailbox
       SET state = 'leased', lease_owner = ?, lease_expires_at = ?, available_at = ?,
           attempts = attempts + 1, updated_at = ?
     WHERE id IN ({claimable_ids})
 RETURNING id, recipient, kind, payload, priority, attempts, max_attempts, user_id"""

CLAIM_INDEX = (
    "CREATE INDEX IF NOT EXISTS mailbox_claimable ON mailbox "
    "(recipient, priority DESC, id) WHERE state IN ('ready', 'failed', 'leased')"
)


class Mailbox:
    """Put, claim, ack and nack work items. Thread-safe: each thread uses its own connection.

    Every method runs in the caller's thread and raises peewee errors only for a
    database that is unreachable; lost leases are reported as False, not raised.
    """

    def __init__(
        self,
        db: peewee.Database,
        policy: RetryPolicy | None = None,
        now: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ):
        self.db = db
        self.policy = policy or RetryPolicy()
        self.now = now
        self.rand = rand
        self.dialect = db.dialect
        self._claim = self.dialect.sql(
            CLAIM.format(claimable_ids=self.dialect.skip_locked(CLAIMABLE_IDS))
        )

    # --- writing work -------------------------------------------------------------

    def _row(self, e: NewEntry, now: float) -> dict[str, Any]:
        return {
            "recipient": e.recipient,
            "kind": e.kind,
            "payload": e.payload,
            "priority": e.priority,
            "state": "ready",
            "available_at": now if e.available_at is None else e.available_at,
            "attempts": 0,
            "max_attempts": e.max_attempts or self.policy.max_attempts,
            "dedupe_key": e.dedupe_key,
            "user_id": e.user_id,
            "created_at": now,
            "updated_at": now,
        }

    def put_many(self, entries: Iterable[NewEntry]) -> int:
        """Insert entries in one transaction (the caller's, if there is one).

        An entry whose dedupe_key is already present is skipped. Returns how many were given.
        The rows go through one prepared statement, not peewee's query builder, which
        costs more than the insert itself at a few thousand rows.
        """
        now = self.now()
        to_db = MailboxEntry.payload.db_value
        rows = []
        for e in entries:
            row = self._row(e, now)
            row["payload"] = to_db(row["payload"])
            rows.append(tuple(row[c] for c in INSERT_COLUMNS))
        if not rows:
            return 0
        with self.db.atomic():
            self.dialect.insert_ignore_many("mailbox", INSERT_COLUMNS, rows)
        return len(rows)

    def put(
        self, recipient: str, kind: str, payload: dict[str, Any] | None = None, **kw: Any
    ) -> int | None:
        """Insert one entry; returns its id, or None when its dedupe_key was already queued."""
        row = self._row(NewEntry(recipient, kind, payload or {}, **kw), self.now())
        # RETURNING, not lastrowid: after an ignored insert SQLite's lastrowid is the
        # previous insert's id, which would report a duplicate as queued.
        query = MailboxEntry.insert(row).on_conflict_ignore().returning(MailboxEntry.id)
        inserted = list(query.tuples().execute())
        return inserted[0][0] if inserted else None

    # --- taking work -------------------------------------------------------------

    def claim(self, recipient: str, n: int, lease_seconds: float, owner: str) -> list[Entry]:
        """Lease up to n due entries, highest priority then oldest first, in one short transaction."""
        now = self.now()
        expires = now + lease_seconds
        params = (owner, expires, expires, now, recipient, now, n)
        with write_transaction(self.db):
            rows = self.db.execute_sql(self._claim, params).fetchall()
        entries = [
            Entry(r[0], r[1], r[2], json.loads(r[3]) if r[3] else {}, r[4], r[5], r[6], r[7])
            for r in rows
        ]
        entries.sort(key=lambda e: (-e.priority, e.id))
        return entries

    def ack(self, entry_id: int, owner: str) -> bool:
        """Mark done. False when the lease was lost (expired and taken by another owner)."""
        return self.ack_many([entry_id], owner) == 1

    def ack_many(self, entry_ids: list[int], owner: str) -> int:
        """Mark a batch (a claim's worth) done in one statement; returns how many were still ours."""
        if not entry_ids:
            return 0
        sql = self.dialect.sql(ACK.format(ids=", ".join("?" * len(entry_ids))))
        return self.db.execute_sql(sql, (self.now(), *entry_ids, owner)).rowcount

    def nack(
        self,
        entry: Entry,
        owner: str,
        error: str,
        retry_after: float | None = None,
        permanent: bool = False,
    ) -> str:
        """Schedule a retry with back-off (or after `retry_after`), or dead-letter the entry.

        Returns the new state: "failed" (will retry), "dead", or "lost" when the lease
        was no longer ours.
        """
        now = self.now()
        dead = permanent or self.policy.exhausted(entry.attempts, entry.max_attempts)
        if dead:
            state, available_at = "dead", now
        else:
            delay = self.policy.delay(entry.attempts, self.rand)
            if retry_after is not None:
                delay = max(retry_after, 0.0)
            state, available_at = "failed", now + delay
        changed = (
            MailboxEntry.update(
                state=state,
                available_at=available_at,
                lease_owner=None,
                lease_expires_at=None,
                last_error=error[:4000],
                updated_at=now,
            )
            .where(
                (MailboxEntry.id == entry.id)
                & (MailboxEntry.state == "leased")
                & (MailboxEntry.lease_owner == owner)
            )
            .execute()
        )
        return state if changed else "lost"

    def extend_lease(self, entry_ids: list[int], owner: str, lease_seconds: float) -> int:
        """Push the expiry of our own leases forward; returns how many were still ours."""
        if not entry_ids:
            return 0
        expires = self.now() + lease_seconds
        return (
            MailboxEntry.update(lease_expires_at=expires, available_at=expires)
            .where(
                MailboxEntry.id.in_(entry_ids)
                & (MailboxEntry.state == "leased")
                & (MailboxEntry.lease_owner == owner)
            )
            .execute()
        )

    def release(self, entry_ids: list[int], owner: str) -> int:
        """Give leased entries back untouched (graceful stop): the attempt does not count."""
        return self.defer(entry_ids, owner, self.now())

    def defer(self, entry_ids: list[int], owner: str, until: float) -> int:
        """Put leased entries back until `until` without counting the attempt (rate limits)."""
        if not entry_ids:
            return 0
        return (
            MailboxEntry.update(
                state="ready",
                available_at=until,
                lease_owner=None,
                lease_expires_at=None,
                attempts=MailboxEntry.attempts - 1,
                updated_at=self.now(),
            )
            .where(
                MailboxEntry.id.in_(entry_ids)
                & (MailboxEntry.state == "leased")
                & (MailboxEntry.lease_owner == owner)
            )
            .execute()
        )

    def recover(self, recipient: str, owner: str) -> int:
        """Make claimable at once what a previous incarnation of this actor held.

        That is: entries leased by an earlier incarnation of this actor in this process
        (crashed or hung; a hung one that wakes finds its lease gone) and entries whose
        owner was a process on this host that has died.
        Entries of live processes elsewhere are left to expire.
        """
        now = self.now()
        owners = [
            row.lease_owner
            for row in MailboxEntry.select(MailboxEntry.lease_owner)
            .where((MailboxEntry.recipient == recipient) & (MailboxEntry.state == "leased"))
            .distinct()
        ]
        stale = [o for o in owners if same_actor_here(o, owner) or owner_is_dead(o)]
        if not stale:
            return 0
        with write_transaction(self.db):
            count = (
                MailboxEntry.update(available_at=now, lease_expires_at=now, updated_at=now)
                .where(
                    (MailboxEntry.recipient == recipient)
                    & (MailboxEntry.state == "leased")
                    & MailboxEntry.lease_owner.in_(stale)
                )
                .execute()
            )
        if count:
            log.info(
                "%s: recovered %d entries left leased by %s", recipient, count, ", ".join(stale)
            )
        return count

    # --- looking --------------------------------------------------------------------

    def next_due(self) -> dict[str, float]:
        """Earliest available_at of claimable work, per recipient."""
        query = (
            MailboxEntry.select(MailboxEntry.recipient, peewee.fn.MIN(MailboxEntry.available_at))
            .where(MailboxEntry.state.in_(CLAIMABLE))
            .group_by(MailboxEntry.recipient)
        )
        return {recipient: due for recipient, due in query.tuples()}

    def depths(self) -> list[dict[str, Any]]:
        """Count per recipient and state, with the age of the oldest due entry where ready."""
        now = self.now()
        out = []
        query = (
            MailboxEntry.select(
                MailboxEntry.recipient,
                MailboxEntry.state,
                peewee.fn.COUNT(MailboxEntry.id),
                peewee.fn.MIN(MailboxEntry.available_at),
            )
            .where(MailboxEntry.state.not_in(FINISHED))
            .group_by(MailboxEntry.recipient, MailboxEntry.state)
        )
        for recipient, state, count, oldest in query.tuples():
            age = max(0.0, now - oldest) if state in ("ready", "failed") and oldest else 0.0
            out.append(
                {
                    "recipient": recipient,
                    "state": state,
                    "count": count,
                    "oldest_ready_age_seconds": round(age, 3),
                }
            )
        dead = (
            MailboxEntry.select(MailboxEntry.recipient, peewee.fn.COUNT(MailboxEntry.id))
            .where(MailboxEntry.state == "dead")
            .group_by(MailboxEntry.recipient)
        )
        out.extend(
            {"recipient": r, "state": "dead", "count": c, "oldest_ready_age_seconds": 0.0}
            for r, c in dead.tuples()
        )
        return out


def create_claim_index(db: peewee.Database) -> None:
    """The partial index the claim statement walks (priority order over open entries only)."""
    db.execute_sql(CLAIM_INDEX)
