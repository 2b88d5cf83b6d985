"""Durable mailboxes: one table of work items with leases, retries and dead letters.

The SQL is the same on SQLite and PostgreSQL but for the claim's row locks and the
transaction that wraps it, which the database's dialect (`supervisor/dialect.py`) supplies.
"""

from __future__ import annotations

import contextlib
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

from messagepusher.supervisor.db import insert_returning_ids, write_transaction
from messagepusher.supervisor.models import Delivery, MailboxEntry, Pause
from messagepusher.supervisor.retry import RetryPolicy

log = logging.getLogger(__name__)

CLAIMABLE = ("ready", "failed", "leased")
FINISHED = ("done", "dead", "cancelled")
REDRIVABLE = ("ready", "failed", "dead")  # what a hand retry may put back to ready now
CANCELLABLE = REDRIVABLE  # a leased entry is in a worker's hands: it finishes first
CHANNEL_RECIPIENT = "channel_pool"
# A due entry of a paused channel waits at this available_at, still `ready` (see Mailbox.claim);
# resuming the channel makes it due now. It lies beyond every time the API accepts.
PARKED_AT = 1.0e13


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


def renew_node_id() -> str:
    """A process forked from another (the zygote's workers) takes its own id; returns it.

    Main thread, before any actor starts: owners already handed out keep the old id.
    """
    global NODE_ID  # noqa: PLW0603 - the module's id is per process, and this is a new process
    NODE_ID = _node_id()
    return NODE_ID


def owner_for(actor_name: str, incarnation: int = 1) -> str:
    """Lease owner of one incarnation of an actor in this process: host:pid:start/actor#n."""
    return f"{NODE_ID}/{actor_name}#{incarnation}"


def same_actor_here(owner: str, other: str) -> bool:
    """True when both owners are incarnations of one actor in one process."""
    return owner.split("#", 1)[0] == other.split("#", 1)[0]


def owner_is_dead(owner: str) -> bool:
    """True when `owner` was a process on this host that no longer runs (gone or a zombie).

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
        process = psutil.Process(pid_n)
        # A zombie has exited: nothing reaps an orphan's children where no init does (a
        # container's first process), and its entry stays until its new parent waits on it.
        return int(process.create_time()) != started_n or process.status() == psutil.STATUS_ZOMBIE
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

PAUSES = "SELECT mailbox, channel_id FROM pause"

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
        with self._transaction():
            self.dialect.insert_ignore_many("mailbox", INSERT_COLUMNS, rows)
        return len(rows)

    def put_leased(self, entries: list[NewEntry], owner: str, lease_seconds: float) -> list[Entry]:
        """Insert entries already leased to `owner`, as if it had just claimed them; in order.

        For work handed to a live actor of this process in the transaction that creates it
        (ingest's fresh sends to the channel pool): the claim's transaction is saved, and
        if the owner dies before running them, `recover` or the lease's expiry frees them
        as it would after a claim. The entries must have no dedupe_key.
        """
        if not entries:
            return []
        now = self.now()
        expires = now + lease_seconds
        to_db = MailboxEntry.payload.db_value
        columns = (*INSERT_COLUMNS, "lease_owner", "lease_expires_at")
        rows = [
            {
                **self._row(e, now),
                "payload": to_db(e.payload),
                "state": "leased",
                "available_at": expires,
                "attempts": 1,
                "lease_owner": owner,
                "lease_expires_at": expires,
            }
            for e in entries
        ]
        with self._transaction():
            ids = insert_returning_ids(
                "mailbox", columns, [tuple(r[c] for c in columns) for r in rows], db=self.db
            )
        return [
            Entry(i, e.recipient, e.kind, e.payload, e.priority, 1, r["max_attempts"], e.user_id)
            for i, e, r in zip(ids, entries, rows, strict=True)
        ]

    def _transaction(self):
        """A write transaction, or the caller's: a savepoint inside it would cost two
        statements and buy nothing, since an error here rolls the caller's back too."""
        if self.db.in_transaction():
            return contextlib.nullcontext()
        return write_transaction(self.db)

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
        """Lease up to n due entries, highest priority then oldest first, in one short transaction.

        Nothing while the recipient's mailbox is paused. While channels are paused, the due
        entries of theirs at the head of the channel pool's queue are parked first (`_park`),
        so that the claim passes over them and they stay ready.
        """
        now = self.now()
        paused_mailboxes, paused_channels = self.pauses()
        if recipient in paused_mailboxes:
            return []
        expires = now + lease_seconds
        params = (owner, expires, expires, now, recipient, now, n)
        with self._transaction():
            if paused_channels and recipient == CHANNEL_RECIPIENT:
                self._park(paused_channels, n, now)
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
        """Earliest available_at of claimable work, per recipient whose mailbox is not paused."""
        paused = self.pauses()[0]
        query = (
            MailboxEntry.select(MailboxEntry.recipient, peewee.fn.MIN(MailboxEntry.available_at))
            .where(MailboxEntry.state.in_(CLAIMABLE))
            .group_by(MailboxEntry.recipient)
        )
        return {recipient: due for recipient, due in query.tuples() if recipient not in paused}

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

    # --- pauses ------------------------------------------------------------------------

    def pauses(self) -> tuple[set[str], set[int]]:
        """(paused mailbox names, paused channel ids), read from the database every call: a
        pause is cluster-wide and survives restarts."""
        mailboxes: set[str] = set()
        channels: set[int] = set()
        # Every claim asks: a fixed statement, not the query builder, keeps that cheap.
        for mailbox, channel_id in self.db.execute_sql(PAUSES).fetchall():
            if mailbox is not None:
                mailboxes.add(mailbox)
            if channel_id is not None:
                channels.add(channel_id)
        return mailboxes, channels

    def pause(self, by: str, mailbox: str | None = None, channel_id: int | None = None) -> None:
        """Pause a mailbox or a channel (give one); pausing again keeps the first pause."""
        row = {"mailbox": mailbox, "channel": channel_id, "paused_by": by, "paused_at": self.now()}
        with write_transaction(self.db):
            Pause.insert(row).on_conflict_ignore().execute()

    def resume(self, mailbox: str | None = None, channel_id: int | None = None) -> bool:
        """Lift a pause; False when there was none. A resumed channel's parked work is due now
        (every parked entry is: those of channels still paused are parked again by the next claim)."""
        now = self.now()
        where = Pause.mailbox == mailbox if mailbox is not None else Pause.channel == channel_id
        with write_transaction(self.db):
            lifted = Pause.delete().where(where).execute()
            if channel_id is not None:
                MailboxEntry.update(available_at=now, updated_at=now).where(
                    (MailboxEntry.recipient == CHANNEL_RECIPIENT)
                    & MailboxEntry.state.in_(CLAIMABLE)
                    & (MailboxEntry.available_at >= PARKED_AT)
                ).execute()
        return bool(lifted)

    def _park(self, channels: set[int], n: int, now: float) -> None:
        """Move the paused channels' due entries out of the head of the channel pool's queue.

        Runs inside the claim's write transaction. Only the n entries the claim would take are
        looked at, again until none of them is a paused channel's, so each parked entry costs
        one look; an expired lease among them becomes ready again (its worker is gone).
        """
        due = (
            (MailboxEntry.recipient == CHANNEL_RECIPIENT)
            & MailboxEntry.state.in_(CLAIMABLE)
            & (MailboxEntry.available_at <= now)
        )
        while True:
            head = (
                MailboxEntry.select(MailboxEntry.id, MailboxEntry.kind, MailboxEntry.payload)
                .where(due)
                .order_by(MailboxEntry.priority.desc(), MailboxEntry.id)
                .limit(n)
                .tuples()
            )
            by_delivery = {
                payload.get("delivery_id"): entry_id
                for entry_id, kind, payload in head
                if kind == "send" and payload
            }
            if not by_delivery:
                return
            blocked = [
                by_delivery[delivery_id]
                for (delivery_id,) in Delivery.select(Delivery.id)
                .where(Delivery.id.in_(list(by_delivery)) & Delivery.channel.in_(list(channels)))
                .tuples()
            ]
            if not blocked:
                return
            MailboxEntry.update(
                available_at=PARKED_AT,
                state=peewee.Case(
                    None, [(MailboxEntry.state == "leased", "ready")], MailboxEntry.state
                ),
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            ).where(due & MailboxEntry.id.in_(blocked)).execute()

    # --- hand intervention --------------------------------------------------------------

    def redrive(self, entry_ids: list[int]) -> int:
        """Ready now with a fresh attempt budget (a hand retry); only dead, failed and ready
        entries change. Returns how many did. Runs in the caller's transaction, if any."""
        if not entry_ids:
            return 0
        now = self.now()
        return (
            MailboxEntry.update(
                state="ready",
                attempts=0,
                available_at=now,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            )
            .where(MailboxEntry.id.in_(entry_ids) & MailboxEntry.state.in_(REDRIVABLE))
            .execute()
        )

    def cancel(self, entry_id: int, reason: str) -> bool:
        """Cancelled for good (never claimed again, purged like done work); False unless it was
        ready, failed or dead. Runs in the caller's transaction, if any."""
        now = self.now()
        changed = (
            MailboxEntry.update(state="cancelled", last_error=reason[:4000], updated_at=now)
            .where((MailboxEntry.id == entry_id) & MailboxEntry.state.in_(CANCELLABLE))
            .execute()
        )
        return changed == 1


def payload_number(db: peewee.Database, key: str) -> peewee.SQL:
    """The integer `payload.<key>` of a mailbox row, as an SQL expression (NULL when absent)."""
    return peewee.SQL(db.dialect.json_integer("payload", key))


def create_claim_index(db: peewee.Database) -> None:
    """The partial index the claim statement walks (priority order over open entries only)."""
    db.execute_sql(CLAIM_INDEX)
