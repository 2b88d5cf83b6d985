"""The message store: every write to the message, delivery and message_event tables, as named transitions.

`lifecycle` decides; this module carries the decisions out, with its SQL as the constants below.

Unless a docstring says otherwise, a function runs in the caller's thread inside the caller's
write transaction, and a database error propagates (the caller's transaction rolls back).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from messagepusher.messages import lifecycle
from messagepusher.supervisor.db import (
    database,
    execute,
    execute_many,
    insert_returning_ids,
    placeholders,
    select_rows,
    write_transaction,
)
from messagepusher.supervisor.mailbox import CHANNEL_RECIPIENT, Entry, NewEntry
from messagepusher.supervisor.models import Channel, Message, MessageEvent

if TYPE_CHECKING:
    from messagepusher.supervisor.mailbox import Mailbox

PUBLIC_TOKEN_BYTES = 24  # 192 random bits, 32 URL-safe characters (the page /m/{token})

# --- the SQL ---------------------------------------------------------------------------------

MESSAGE_COLUMNS = (
    "user_id",
    "title",
    "body",
    "format",
    "url",
    "priority",
    "status",
    "accepted_status",
    "ai_request",
    "send_at",
    "callback_url",
    "idempotency_key",
    "request_hash",
    "recipients",
    "created_at",
    "updated_at",
    "public_token",
)
IMPORTED_COLUMNS = (
    "user_id",
    "title",
    "body",
    "format",
    "url",
    "priority",
    "status",
    "accepted_status",
    "idempotency_key",
    "created_at",
    "updated_at",
    "finished_at",
)
DELIVERY_COLUMNS = (
    "message_id",
    "channel_id",
    "channel_name",
    "channel_type",
    "status",
    "attempts",
    "fallback_of_id",
    "created_at",
    "updated_at",
)
INSERT_EVENT = "INSERT INTO message_event (message_id, at, type, detail) VALUES (?, ?, ?, ?)"
# A callback's outcome is recorded only while its message is still there (not purged).
INSERT_EVENT_IF_MESSAGE = """
    INSERT INTO message_event (message_id, at, type, detail)
    SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM message WHERE id = ?)"""
SET_STAGE_STATUS = (
    "UPDATE message SET status = ?, updated_at = ? WHERE id IN ({ids}) AND status NOT IN ({finals})"
)
MARK_DELIVERIES_SENDING = (
    "UPDATE delivery SET status = 'sending', updated_at = ? WHERE id IN ({ids})"
)
RECORD_OUTCOME = (
    "UPDATE delivery SET status = ?, attempts = ?, response_code = ?, response = ?, last_error = ?, "
    "sent_at = COALESCE(?, sent_at), remote_id = COALESCE(?, remote_id), updated_at = ? "
    "WHERE id = ?"
)
FINISH_MESSAGE = "UPDATE message SET status = ?, finished_at = ?, updated_at = ? WHERE id = ?"
RECORD_FETCHED = "UPDATE message SET fetched = ?, updated_at = ? WHERE id = ?"
RECORD_AI_RESULT = "UPDATE message SET ai_result = ?, updated_at = ? WHERE id = ?"
FAIL_PENDING = (
    "UPDATE delivery SET status = 'failed', last_error = ?, updated_at = ? "
    "WHERE message_id = ? AND status = 'pending'"
)
CANCEL_UNSENT = (
    "UPDATE delivery SET status = 'cancelled', updated_at = ? "
    "WHERE message_id = ? AND status IN ('pending', 'sending')"
)
REQUEUE_DELIVERIES = (
    "UPDATE delivery SET status = 'pending', attempts = 0, last_error = NULL, updated_at = ? "
    "WHERE id IN ({ids})"
)
REQUEUE_MESSAGE = "UPDATE message SET status = ?, finished_at = NULL, updated_at = ? WHERE id = ?"
# Hand intervention on a task (operations/task_control.py): a failed or dead delivery pending again,
# its finished (not cancelled) message queued again; one unsent delivery cancelled.
REOPEN_FAILED_DELIVERIES = (
    "UPDATE delivery SET status = 'pending', attempts = 0, last_error = NULL, updated_at = ? "
    "WHERE id IN ({ids}) AND status IN ({failed})"
)
REQUEUE_FINISHED_MESSAGES = (
    "UPDATE message SET status = 'queued', finished_at = NULL, updated_at = ? "
    "WHERE id IN ({ids}) AND status IN ({finals}) AND status <> 'cancelled'"
)
CANCEL_DELIVERY = "UPDATE delivery SET status = 'cancelled', updated_at = ? WHERE id = ? AND status NOT IN ({finals})"
EDIT_MESSAGE = "UPDATE message SET title = ?, body = ?, updated_at = ? WHERE id = ?"
PENDING_DELIVERIES = (
    "SELECT id FROM delivery WHERE message_id = ? AND status = 'pending' ORDER BY id"
)
MESSAGE_DELIVERIES = (
    "SELECT id, message_id, channel_id, channel_name, status, fallback_of_id "
    "FROM delivery WHERE message_id IN ({ids})"
)
# Drop the keys the target user already has, so the moved messages keep theirs unique.
RELEASE_CLASHING_KEYS = """
    UPDATE message SET idempotency_key = NULL
     WHERE user_id = ? AND idempotency_key IN
           (SELECT idempotency_key FROM message WHERE user_id = ? AND idempotency_key IS NOT NULL)"""
MOVE_MESSAGES = "UPDATE message SET user_id = ? WHERE user_id = ?"
DELETE_EVENTS_OF = "DELETE FROM message_event WHERE message_id IN ({ids})"
DELETE_DELIVERIES_OF = "DELETE FROM delivery WHERE message_id IN ({ids})"
DELETE_MESSAGES = "DELETE FROM message WHERE id IN ({ids})"
DELETE_EVENTS = "DELETE FROM message_event WHERE id IN ({ids})"
EVENTS_AFTER = """
    SELECT e.id, e.message_id, e.at, e.type, e.detail, m.status
      FROM message_event e JOIN message m ON m.id = e.message_id
     WHERE e.id > ? {owner} ORDER BY e.id LIMIT ?"""
LAST_EVENT_ID = "SELECT MAX(id) FROM message_event"
EVENTS_OF = "SELECT at, type, detail FROM message_event WHERE message_id = ? ORDER BY id"

# What one send needs from the delivery, its message and its channel, read in one query.
SEND_ROWS = """
    SELECT d.id, d.message_id, d.channel_id, d.channel_name, d.channel_type, d.status,
           m.status, m.title, m.body, m.format, m.url, m.priority, m.fetched, m.ai_result, m.created_at,
           m.recipients, c.config, c.updated_at, m.public_token, u.preferences
      FROM delivery d JOIN message m ON m.id = d.message_id LEFT JOIN channel c ON c.id = d.channel_id
      JOIN "user" u ON u.id = m.user_id
     WHERE d.id IN ({ids})"""
# Deliveries untouched since they were accepted: still pending, never written again (a status,
# a retry, an edit of their message all set updated_at), and their channel unchanged since.
UNTOUCHED_DELIVERIES = """
    SELECT d.id, d.message_id, d.channel_id, d.created_at
      FROM delivery d JOIN channel c ON c.id = d.channel_id
     WHERE d.id IN ({ids}) AND d.status = 'pending' AND d.updated_at = d.created_at
       AND c.updated_at <= d.created_at"""
TOUCH_UNSENT = (
    "UPDATE delivery SET updated_at = ? WHERE message_id = ? AND status IN ('pending', 'sending')"
)

MAX_FALLBACK_DEPTH = 3
HANDOFF_LIMIT = 20_000
HANDOFF_SECONDS = 300.0
UNSENT = ("pending", "sending")

_event_detail = MessageEvent.detail.db_value
_json = Message.ai_request.db_value


def _ids(n: int) -> str:
    return placeholders(n)


# --- which mailbox entries carry a message's stage (the one place) ---------------------------


@dataclass(frozen=True)
class MessageRef:
    """What routing a message needs: its id, priority and owner."""

    id: int
    priority: int
    user_id: int


def send_entry(
    delivery_id: int,
    message_id: int,
    priority: int,
    user_id: int,
    available_at: float | None = None,
) -> NewEntry:
    """The channel_pool work item that sends one delivery."""
    return NewEntry(
        "channel_pool",
        "send",
        {"delivery_id": delivery_id, "message_id": message_id},
        priority=priority,
        available_at=available_at,
        user_id=user_id,
    )


def stage_entries(
    message: MessageRef,
    stage: str,
    delivery_ids: Iterable[int],
    available_at: float | None = None,
) -> list[NewEntry]:
    """The mailbox entries that run `stage` (fetch, ai or send) of one message (pure).

    A send is one entry per delivery; fetch and ai are one entry for the message.
    """
    if stage == "send":
        return [
            send_entry(d, message.id, message.priority, message.user_id, available_at)
            for d in delivery_ids
        ]
    return [
        NewEntry(
            lifecycle.STAGE_RECIPIENT[stage],
            stage,
            {"message_id": message.id},
            priority=message.priority,
            available_at=available_at,
            user_id=message.user_id,
        )
    ]


@dataclass(frozen=True)
class SendRow:
    """What one send needs from the delivery, its message and its channel (one SEND_ROWS row)."""

    delivery_id: int
    message_id: int
    channel_id: int | None
    channel_name: str
    channel_type: str
    status: str
    message_status: str
    title: str
    body: str
    format: str
    url: str | None
    priority: int
    fetched: str | None
    ai_result: str | None
    created_at: float
    recipients: str | None
    channel_config: str | None
    channel_updated_at: float | None
    public_token: str | None = None  # the public page's (actors/channels/details_link.py)
    owner_preferences: str | None = None  # None in a hand-off: the owner was not read


class SendHandoff:
    """Send rows ingest has just committed, handed to this process's channel pool so it does
    not read back what was just written.

    Ingest's actor thread `put`s after its commit; the channel pool's actor thread `take`s
    inside its claim transaction, where one id-only query (UNTOUCHED_DELIVERIES) confirms
    each row is still what was stored: a delivery written since (sent, cancelled, retried,
    its message edited), its channel changed or deleted, or an id taken by another row all
    fall back to reading SEND_ROWS. Bounded: the oldest rows and rows older than
    HANDOFF_SECONDS are dropped (their entries were taken elsewhere or wait for send_at).
    Thread-safe; database errors propagate.
    """

    def __init__(self, limit: int = HANDOFF_LIMIT) -> None:
        self._lock = threading.Lock()
        self._rows: OrderedDict[int, SendRow] = OrderedDict()
        self._limit = limit

    def put(self, rows: Iterable[SendRow]) -> None:
        with self._lock:
            for row in rows:
                self._rows[row.delivery_id] = row
            while len(self._rows) > self._limit:
                self._rows.popitem(last=False)

    def take(self, delivery_ids: Iterable[int], now: float) -> dict[int, SendRow]:
        """The rows of these deliveries still as stored; the others are left to the caller."""
        with self._lock:
            found = {i: row for i in delivery_ids if (row := self._rows.pop(i, None)) is not None}
        fresh = {i: row for i, row in found.items() if now - row.created_at <= HANDOFF_SECONDS}
        if not fresh:
            return {}
        ids = tuple(fresh)
        return {
            delivery_id: row
            for delivery_id, *stored in select_rows(
                UNTOUCHED_DELIVERIES.format(ids=_ids(len(ids))), ids
            )
            if [(row := fresh[delivery_id]).message_id, row.channel_id, row.created_at] == stored
        }


@dataclass(frozen=True)
class LeasedSend:
    """A send leased to the channel pool in ingest's own commit: to whom, its entry, and
    what the send needs."""

    owner: str
    entry: Entry
    row: SendRow


class LeasedSends:
    """Fresh sends that ingest leases straight to this process's channel pool while it has
    idle workers, so that the pool runs them without a claim transaction of its own.

    The channel pool's actor thread `open`s it with its lease owner, keeps its `room` (idle
    workers) current, `take`s what was leased and `close`s it as it stops. Ingest's actor
    thread asks `reserve` inside its transaction and `put`s after the commit, which tells
    the pool. A send leased to an incarnation that stopped before taking it is handed to
    the next one as stale; that one makes it claimable (`Mailbox.recover`), as a claim's
    lease would be after a crash. Thread-safe; raises only what the pool's `notify` raises.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: str | None = None
        self._room = 0
        self._accepts: Callable[[str], bool] = _never
        self._notify: Callable[[], object] = _nothing
        self._waiting: list[LeasedSend] = []

    def open(
        self,
        owner: str,
        room: int,
        accepts: Callable[[str], bool],
        notify: Callable[[], object],
    ) -> None:
        """Channel pool's actor thread: lease to `owner` from now on, sends of the channel
        types `accepts` takes (those without a rate limit), `notify` after each put."""
        with self._lock:
            self._owner, self._room, self._accepts, self._notify = owner, room, accepts, notify

    def set_room(self, owner: str, room: int) -> None:
        """Channel pool's actor thread: how many more sends its workers would start at once."""
        with self._lock:
            if owner == self._owner:
                self._room = room

    def close(self, owner: str) -> list[LeasedSend]:
        """Channel pool's actor thread, as it stops: no more leases; what waits leased to it."""
        with self._lock:
            if owner == self._owner:
                self._owner, self._room = None, 0
                self._accepts, self._notify = _never, _nothing
            mine = [s for s in self._waiting if s.owner == owner]
            self._waiting = [s for s in self._waiting if s.owner != owner]
        return mine

    def has_room(self) -> bool:
        """Ingest's actor thread: whether a pool is open with an idle worker (a hint)."""
        return self._owner is not None and self._room > 0

    def reserve(self, channel_types: Sequence[str]) -> str | None:
        """Ingest's actor thread: the owner to lease these sends of one message to, or None
        (no pool here, too few idle workers, a rate-limited channel type)."""
        with self._lock:
            if (
                self._owner is None
                or self._room < len(channel_types)
                or not all(self._accepts(t) for t in channel_types)
            ):
                return None
            self._room -= len(channel_types)
            return self._owner

    def put(self, sends: Iterable[LeasedSend]) -> None:
        """Ingest's actor thread, after its commit: the sends wait for their owner, told."""
        added = list(sends)
        if not added:
            return
        with self._lock:
            self._waiting.extend(added)
            notify = self._notify
        notify()

    def take(self, owner: str) -> tuple[list[LeasedSend], bool]:
        """Channel pool's actor thread: the sends leased to `owner`, and whether any others
        waited (leased to an earlier incarnation: the caller makes them claimable)."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        mine = [s for s in waiting if s.owner == owner]
        return mine, len(mine) < len(waiting)


def _never(_channel_type: str) -> bool:
    return False


def _nothing() -> None:
    return None


def _send_row(
    delivery_id: int,
    message_id: int,
    channel: Channel,
    draft: Any,
    status: str,
    now: float,
    delivery_status: str = "pending",
) -> SendRow:
    return SendRow(
        delivery_id,
        message_id,
        channel.id,
        channel.name,
        channel.type,
        delivery_status,
        status,
        draft.title,
        draft.body,
        draft.format,
        draft.url,
        draft.priority,
        None,
        None,
        now,
        _json(draft.recipients),
        channel.config,
        channel.updated_at,
    )


def _add_events(events: list[tuple]) -> None:
    execute_many(INSERT_EVENT, events)


def add_event(message_id: int, kind: str, detail: Any, now: float) -> None:
    """One timeline event of a message."""
    execute(INSERT_EVENT, (message_id, now, kind, _event_detail(detail)))


# --- accept ---------------------------------------------------------------------------------


@dataclass
class NewMessage:
    """A validated draft with the channels it goes to, ready to be stored (see ingest.Draft)."""

    draft: Any
    channels: Sequence[Channel]


@dataclass(frozen=True)
class Stored:
    """What `accept` wrote for one message."""

    id: int
    status: str
    wake: tuple[str, ...]
    sends: tuple[SendRow, ...] = ()
    leased: tuple[LeasedSend, ...] = ()


def new_public_token() -> str:
    """A fresh public-page token for a new message (random, never derived from its id)."""
    return secrets.token_urlsafe(PUBLIC_TOKEN_BYTES)


def _message_row(d: Any, status: str, now: float, token: str, shown: str) -> tuple:
    return (
        d.user_id,
        d.title,
        d.body,
        d.format,
        d.url,
        d.priority,
        shown,
        status,
        _json(d.ai),
        d.send_at,
        d.callback_url,
        d.idempotency_key,
        d.request_hash,
        _json(d.recipients),
        now,
        now,
        token,
    )


def accept(
    mailbox: Mailbox,
    new: list[NewMessage],
    now: float,
    lessee: LeasedSends | None = None,
    lease_seconds: float = 60.0,
) -> list[Stored]:
    """The accept transition for a batch: messages, deliveries, events and first entries.

    The first stage and status come from `lifecycle`; a future `send_at` makes the first
    entry wait until then. A message to send now whose channels `lessee` takes (this
    process's channel pool has idle workers; neither the pool's mailbox nor the channels
    are paused) is stored `sending` with its entries leased to the pool, as its claim
    would have left them; `Stored.leased` carries them, for `LeasedSends.put` after the
    commit. Ingest's actor thread, inside its group-commit transaction.
    """
    if not new:
        return []
    plans = []
    for item in new:
        d = item.draft
        stage = lifecycle.first_stage(bool(d.url), bool(d.ai))
        plans.append((item, stage, lifecycle.initial_status(d.send_at, now, stage)))
    owners = _lessees(mailbox, lessee, plans)
    message_ids = insert_returning_ids(
        "message",
        MESSAGE_COLUMNS,
        [
            _message_row(
                item.draft, status, now, new_public_token(), "sending" if owner else status
            )
            for (item, _, status), owner in zip(plans, owners, strict=True)
        ],
    )
    delivery_ids = insert_returning_ids(
        "delivery",
        DELIVERY_COLUMNS,
        [
            (message_id, c.id, c.name, c.type, "sending" if owner else "pending", 0, None, now, now)
            for message_id, (item, _, _), owner in zip(message_ids, plans, owners, strict=True)
            for c in item.channels
        ],
    )
    events, entries, stored = [], [], []
    leased: dict[str, list[tuple[int, SendRow, NewEntry]]] = {}
    cursor = 0
    for message_id, (item, stage, status), owner in zip(message_ids, plans, owners, strict=True):
        d = item.draft
        ids = delivery_ids[cursor : cursor + len(item.channels)]
        cursor += len(item.channels)
        detail: dict[str, Any] = {"channels": [c.name for c in item.channels], "stage": stage}
        if status == "scheduled":
            detail["send_at"] = d.send_at
        events.append(
            (
                message_id,
                now,
                status if status == "scheduled" else "accepted",
                _event_detail(detail),
            )
        )
        available = d.send_at if d.send_at and d.send_at > now else None
        first = stage_entries(MessageRef(message_id, d.priority, d.user_id), stage, ids, available)
        shown, delivery_status = ("sending", "sending") if owner else (status, "pending")
        sends = (
            tuple(
                _send_row(i, message_id, c, d, shown, now, delivery_status)
                for i, c in zip(ids, item.channels, strict=True)
            )
            if stage == "send" and not available
            else ()
        )
        if owner:
            leased.setdefault(owner, []).extend(
                (len(stored), row, entry) for row, entry in zip(sends, first, strict=True)
            )
            stored.append(Stored(message_id, status, ()))
            continue
        entries.extend(first)
        wake = () if available else (lifecycle.STAGE_RECIPIENT[stage],)
        stored.append(Stored(message_id, status, wake, sends))
    _add_events(events)
    mailbox.put_many(entries)
    for owner, items in leased.items():
        taken = mailbox.put_leased([e for _, _, e in items], owner, lease_seconds)
        by_message: dict[int, list[LeasedSend]] = {}
        for (index, row, _), entry in zip(items, taken, strict=True):
            by_message.setdefault(index, []).append(LeasedSend(owner, entry, row))
        for index, sends_of in by_message.items():
            stored[index] = replace(stored[index], leased=tuple(sends_of))
    return stored


def _lessees(
    mailbox: Mailbox, lessee: LeasedSends | None, plans: list[tuple[NewMessage, str, str]]
) -> list[str | None]:
    """Per planned message, the channel pool owner its sends are leased to, or None.

    Only a message `queued` at once is a candidate: `lifecycle.initial_status` gives that
    status to a send due now and to nothing else.
    """
    if (
        lessee is None
        or not lessee.has_room()
        or not any(status == "queued" for _, _, status in plans)
    ):
        return [None] * len(plans)
    paused_mailboxes, paused_channels = mailbox.pauses()
    if CHANNEL_RECIPIENT in paused_mailboxes:
        return [None] * len(plans)
    return [
        lessee.reserve([c.type for c in item.channels])
        if status == "queued" and not any(c.id in paused_channels for c in item.channels)
        else None
        for item, _, status in plans
    ]


# --- stages ---------------------------------------------------------------------------------


def start_work(message_ids: list[int], stage: str, now: float) -> None:
    """A pool took a stage's work (fetch or ai): the messages show it, each with an event.

    The pool's actor thread, inside its claim transaction. Final messages keep their status.
    """
    if not message_ids:
        return
    status = lifecycle.STAGE_STATUS[stage]
    finals = lifecycle.MESSAGE_FINAL
    execute(
        SET_STAGE_STATUS.format(ids=_ids(len(message_ids)), finals=_ids(len(finals))),
        (status, now, *message_ids, *finals),
    )
    _add_events([(m, now, status, None) for m in message_ids])


def start_stage(mailbox: Mailbox, message: Message, stage: str, now: float) -> set[str]:
    """Queue the message's `stage` (fetch, ai or send); return the recipient to wake.

    A send queues one entry per pending delivery and records `queued` on the timeline
    (the fetcher and AI pool record their own start when they take the work).
    """
    ref = MessageRef(message.id, message.priority, message.user_id)
    pending = (
        [row[0] for row in select_rows(PENDING_DELIVERIES, (message.id,))]
        if stage == "send"
        else []
    )
    mailbox.put_many(stage_entries(ref, stage, pending))
    status = lifecycle.STAGE_STATUS[stage]
    finals = lifecycle.MESSAGE_FINAL
    execute(
        SET_STAGE_STATUS.format(ids=_ids(1), finals=_ids(len(finals))),
        (status, now, message.id, *finals),
    )
    if stage == "send":
        add_event(message.id, status, None, now)
    return {lifecycle.STAGE_RECIPIENT[stage]}


def advance(mailbox: Mailbox, message: Message, finished: str, now: float) -> set[str]:
    """The stage after `finished` (from lifecycle) is queued; the recipient to wake."""
    return start_stage(
        mailbox, message, lifecycle.stage_after(finished, bool(message.ai_request)), now
    )


def record_fetched(
    mailbox: Mailbox, message_id: int, fetched: dict[str, Any], now: float
) -> set[str]:
    """The fetch stage's outcome is kept on the message, then the next stage is queued.

    Nothing happens to a message deleted or final meanwhile. The recipients to wake.
    """
    message = Message.get_or_none(Message.id == message_id)
    if message is None or message.status in lifecycle.MESSAGE_FINAL:
        return set()
    execute(RECORD_FETCHED, (_json(fetched), now, message_id))
    if fetched["status"] == "ok":
        detail = {"title": fetched.get("title"), "chars": len(fetched.get("text") or "")}
    else:
        detail = {"error": fetched.get("error")}
    add_event(message_id, "fetched" if fetched["status"] == "ok" else "fetch_failed", detail, now)
    return advance(mailbox, message, "fetch", now)


def record_ai_retry(message_id: int, error: str, now: float) -> None:
    """An AI call failed and will be retried by the mailbox: only the timeline shows it."""
    add_event(message_id, "ai_retry", {"error": error}, now)


def record_ai_result(
    mailbox: Mailbox,
    message: Message,
    result: dict[str, Any],
    task: str,
    fail_unsent: bool,
    now: float,
) -> set[str]:
    """The AI stage's outcome is kept on the message; then either the next stage is queued,
    or (a failure with `fail_unsent`) the pending deliveries fail and the message finishes.
    """
    execute(RECORD_AI_RESULT, (_json(result), now, message.id))
    add_event(
        message.id,
        "ai_done" if result["status"] == "ok" else "ai_failed",
        {"task": task, "provider": result["provider"], "error": result["error"]},
        now,
    )
    if result["status"] != "ok" and fail_unsent:
        execute(
            FAIL_PENDING,
            (
                f"not sent: the AI step failed and ai.on_failure is fail: {result['error']}",
                now,
                message.id,
            ),
        )
        return finish_if_final(mailbox, message.id, now)
    return advance(mailbox, message, "ai", now)


# --- sending ----------------------------------------------------------------------------------


def mark_sending(delivery_ids: list[int], message_ids: list[int], now: float) -> None:
    """The channel pool took these deliveries: they and their (open) messages are `sending`.

    The pool's actor thread, inside the transaction of the claim that took them.
    """
    if not delivery_ids:
        return
    execute(MARK_DELIVERIES_SENDING.format(ids=_ids(len(delivery_ids))), (now, *delivery_ids))
    finals = lifecycle.MESSAGE_FINAL
    execute(
        SET_STAGE_STATUS.format(ids=_ids(len(message_ids)), finals=_ids(len(finals))),
        ("sending", now, *message_ids, *finals),
    )


@dataclass
class _Open:
    callback_url: str | None
    priority: int
    user_id: int
    status: str


@dataclass
class _Row:
    id: int
    message_id: int
    channel_id: int | None
    channel_name: str
    status: str
    fallback_of: int | None


@dataclass
class SendOutcomes:
    """One write-back of send outcomes: read the touched messages once, write, decide finality.

    `open(...)` locks the touched messages (PostgreSQL: `FOR UPDATE`, so two processes that
    finish a message's last deliveries at once take turns; SQLite's write transaction already
    does) and reads their deliveries once. `record` overlays each outcome on what was read,
    and `commit` writes the outcomes, hands finally failed deliveries to their channel's
    fallback, and gives every message whose deliveries are now all final its final status:
    all without reading a delivery again. The channel pool's actor thread, inside its
    write-back transaction.
    """

    now: float
    messages: dict[int, _Open] = field(default_factory=dict)
    final: set[int] = field(default_factory=set)
    rows: dict[int, _Row] = field(default_factory=dict)
    updates: list[tuple] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)

    @classmethod
    def open(cls, message_ids: set[int], now: float) -> SendOutcomes:
        batch = cls(now)
        ids = sorted(message_ids)
        if not ids:
            return batch
        for message_id, status, callback_url, priority, user_id in select_rows(
            database.dialect.for_update(
                f"SELECT id, status, callback_url, priority, user_id FROM message "
                f"WHERE id IN ({_ids(len(ids))}) ORDER BY id"
            ),
            tuple(ids),
        ):
            batch.messages[message_id] = _Open(callback_url, priority, user_id, status)
            if status in lifecycle.MESSAGE_FINAL:
                batch.final.add(message_id)
        for row in select_rows(MESSAGE_DELIVERIES.format(ids=_ids(len(ids))), tuple(ids)):
            batch.rows[row[0]] = _Row(*row)
        return batch

    def exists(self, delivery_id: int) -> bool:
        """False when the delivery (its message) was deleted meanwhile."""
        return delivery_id in self.rows

    def record(
        self,
        delivery_id: int,
        status: str,
        attempts: int,
        kind: str,
        detail: dict[str, Any],
        response_code: int | None = None,
        response: str | None = None,
        error: str | None = None,
        remote_id: str | None = None,
    ) -> None:
        """One delivery's outcome: `sent`, `pending` (will retry), `failed` or `dead`."""
        row = self.rows[delivery_id]
        row.status = status
        sent = status == "sent"
        self.updates.append(
            (
                status,
                attempts,
                response_code,
                response,
                error,
                self.now if sent else None,
                remote_id if sent else None,
                self.now,
                delivery_id,
            )
        )
        self.events.append((row.message_id, self.now, kind, _event_detail(detail)))
        if status in lifecycle.DELIVERY_FAILED:
            self.ended.append(delivery_id)

    def commit(self, mailbox: Mailbox) -> set[str]:
        """Write what was recorded, the fallbacks and the final states; the recipients to wake."""
        execute_many(RECORD_OUTCOME, self.updates)
        _add_events(self.events)
        wake: set[str] = set()
        for delivery_id in self.ended:
            wake |= self._fallback(mailbox, self.rows[delivery_id])
        return wake | self._finish(mailbox)

    def _fallback(self, mailbox: Mailbox, failed: _Row) -> set[str]:
        """Hand a finally failed delivery to its channel's fallback, once per channel in a chain."""
        channel = (
            Channel.get_or_none(Channel.id == failed.channel_id) if failed.channel_id else None
        )
        if channel is None or channel.fallback_id is None:
            return set()
        chain, node = {failed.channel_id}, failed
        while node.fallback_of is not None and len(chain) <= MAX_FALLBACK_DEPTH:
            node = self.rows[node.fallback_of]
            chain.add(node.channel_id)
        fallback = Channel.get_or_none(Channel.id == channel.fallback_id)
        if (
            fallback is None
            or not fallback.enabled
            or fallback.id in chain
            or len(chain) > MAX_FALLBACK_DEPTH
        ):
            return set()
        message = self.messages[failed.message_id]
        (new_id,) = insert_returning_ids(
            "delivery",
            DELIVERY_COLUMNS,
            [
                (
                    failed.message_id,
                    fallback.id,
                    fallback.name,
                    fallback.type,
                    "pending",
                    0,
                    failed.id,
                    self.now,
                    self.now,
                )
            ],
        )
        self.rows[new_id] = _Row(
            new_id, failed.message_id, fallback.id, fallback.name, "pending", failed.id
        )
        add_event(
            failed.message_id,
            "fallback",
            {"from": failed.channel_name, "to": fallback.name, "delivery_id": new_id},
            self.now,
        )
        mailbox.put_many([send_entry(new_id, failed.message_id, message.priority, message.user_id)])
        return {"channel_pool"}

    def _finish(self, mailbox: Mailbox) -> set[str]:
        touched = {self.rows[u[-1]].message_id for u in self.updates}
        views: dict[int, list[lifecycle.DeliveryView]] = {m: [] for m in touched}
        for row in self.rows.values():
            if row.message_id in views:
                views[row.message_id].append(
                    lifecycle.DeliveryView(row.id, row.status, row.fallback_of)
                )
        finished = {
            m: status
            for m in sorted(touched - self.final)
            if (status := lifecycle.final_status(views[m])) is not None
        }
        return _write_finals(mailbox, self.now, finished, self.messages)


def _write_finals(
    mailbox: Mailbox, now: float, finished: dict[int, str], messages: dict[int, _Open]
) -> set[str]:
    """Final statuses, their events and the callbacks they owe; the recipients to wake."""
    if not finished:
        return set()
    callbacks = []
    for message_id in finished:
        message = messages[message_id]
        if message.callback_url:
            callbacks.append(
                NewEntry(
                    "channel_pool",
                    "callback",
                    {"message_id": message_id, "url": message.callback_url},
                    priority=message.priority,
                    dedupe_key=f"callback:{message_id}",
                    user_id=message.user_id,
                )
            )
    execute_many(FINISH_MESSAGE, [(s, now, now, m) for m, s in finished.items()])
    _add_events([(m, now, s, None) for m, s in finished.items()])
    mailbox.put_many(callbacks)
    return {"channel_pool"} if callbacks else set()


def finish_if_final(
    mailbox: Mailbox, message_ids: int | set[int], now: float, forced: str | None = None
) -> set[str]:
    """Give every message whose deliveries are all final its final status, and queue callbacks.

    `forced` sets that final status regardless (a cancel). Reads the deliveries, so it suits
    callers that changed them by statement (cancel, a failed AI step); the channel pool's
    write-back decides from what it already read (`SendOutcomes`). On PostgreSQL the open
    messages are locked before their deliveries are read, so two processes finishing the
    last deliveries of one message cannot both miss (or both write) its final status; on
    SQLite the write transaction already serializes them. Returns recipients to wake.
    """
    ids = sorted(message_ids) if isinstance(message_ids, set) else [message_ids]
    finals = lifecycle.MESSAGE_FINAL
    open_messages = select_rows(
        database.dialect.for_update(
            f"SELECT id, callback_url, priority, user_id FROM message WHERE id IN ({placeholders(len(ids))}) "
            f"AND status NOT IN ({placeholders(len(finals))}) ORDER BY id"
        ),
        (*ids, *finals),
    )
    if not open_messages:
        return set()
    open_ids = tuple(row[0] for row in open_messages)
    views: dict[int, list[lifecycle.DeliveryView]] = {m: [] for m in open_ids}
    for delivery_id, message_id, _, _, status, fallback_of in select_rows(
        MESSAGE_DELIVERIES.format(ids=_ids(len(open_ids))), open_ids
    ):
        views[message_id].append(lifecycle.DeliveryView(delivery_id, status, fallback_of))
    messages = {row[0]: _Open(row[1], row[2], row[3], "") for row in open_messages}
    finished = {
        m: status
        for m in open_ids
        if (status := forced or lifecycle.final_status(views[m])) is not None
    }
    return _write_finals(mailbox, now, finished, messages)


def record_callback(message_id: int, kind: str, detail: dict[str, Any], now: float) -> None:
    """A callback attempt's outcome on the timeline, unless the message was purged meanwhile."""
    execute(INSERT_EVENT_IF_MESSAGE, (message_id, now, kind, _event_detail(detail), message_id))


# --- hand intervention ------------------------------------------------------------------------


def retry(mailbox: Mailbox, message: Message, by: str, now: float) -> list[int]:
    """The retry transition: failed and dead deliveries (not replaced by a fallback) go back
    to pending and are queued again; the message is `queued`. The retried delivery ids,
    empty when there is nothing to retry (then nothing is written).

    Opens its own write transaction; an HTTP worker thread.
    """
    with write_transaction():
        rows = select_rows(MESSAGE_DELIVERIES.format(ids=_ids(1)), (message.id,))
        ids = lifecycle.retryable(lifecycle.DeliveryView(r[0], r[4], r[5]) for r in rows)
        if not ids:
            return []
        execute(REQUEUE_DELIVERIES.format(ids=_ids(len(ids))), (now, *ids))
        execute(REQUEUE_MESSAGE, (lifecycle.STAGE_STATUS["send"], now, message.id))
        add_event(message.id, "retry", {"deliveries": ids, "by": by}, now)
        mailbox.put_many(
            stage_entries(MessageRef(message.id, message.priority, message.user_id), "send", ids)
        )
    return ids


def cancel(mailbox: Mailbox, message_id: int, by: str, now: float) -> bool:
    """The cancel transition: deliveries not sent yet are cancelled, the message finishes.

    Opens its own write transaction; False when the message was already final.
    """
    with write_transaction():
        message = Message.get_by_id(message_id)
        if not lifecycle.can_cancel(message.status):
            return False
        execute(CANCEL_UNSENT, (now, message_id))
        add_event(message_id, "cancel_requested", {"by": by}, now)
        finish_if_final(mailbox, message_id, now, forced="cancelled")
    return True


def reopen_deliveries(deliveries: dict[int, int], by: str, now: float) -> None:
    """A task's retry: failed and dead deliveries (id → message id) pending again with a fresh
    budget; their finished messages queued again, a `retry` event each. Caller's transaction."""
    if not deliveries:
        return
    ids = list(deliveries)
    failed = lifecycle.DELIVERY_FAILED
    execute(
        REOPEN_FAILED_DELIVERIES.format(ids=_ids(len(ids)), failed=_ids(len(failed))),
        (now, *ids, *failed),
    )
    per_message: dict[int, list[int]] = {}
    for delivery_id, message_id in deliveries.items():
        per_message.setdefault(message_id, []).append(delivery_id)
    finals = lifecycle.MESSAGE_FINAL
    execute(
        REQUEUE_FINISHED_MESSAGES.format(ids=_ids(len(per_message)), finals=_ids(len(finals))),
        (now, *per_message, *finals),
    )
    _add_events(
        [
            (message_id, now, "retry", _event_detail({"deliveries": ids_, "by": by, "via": "task"}))
            for message_id, ids_ in per_message.items()
        ]
    )


def cancel_delivery(
    mailbox: Mailbox, delivery_id: int | None, message_id: int | None, by: str, now: float
) -> set[str]:
    """A task's cancel: a delivery not sent yet cancelled, a `delivery_cancelled` event, and the
    message's final status once nothing else is left. Caller's transaction; returns the
    recipients to wake (a callback to post)."""
    if delivery_id is None or message_id is None:
        return set()
    finals = lifecycle.DELIVERY_FINAL
    changed = execute(CANCEL_DELIVERY.format(finals=_ids(len(finals))), (now, delivery_id, *finals))
    if not changed:
        return set()
    add_event(
        message_id,
        "delivery_cancelled",
        {"delivery_id": delivery_id, "by": by, "via": "task"},
        now,
    )
    return finish_if_final(mailbox, message_id, now)


def record_change(
    message_id: int,
    action: str,
    by: str,
    changes: dict[int, dict[str, Any]],
    now: float,
    new_text: tuple[str, str] | None = None,
) -> None:
    """A recall's or an edit's outcome per delivery on the timeline; an edit's new
    (title, body) on the message. Opens its own write transaction.
    """
    with write_transaction():
        if new_text is not None:
            execute(EDIT_MESSAGE, (*new_text, now, message_id))
            execute(TOUCH_UNSENT, (now, message_id))  # a hand-off of the old text is stale
        add_event(
            message_id,
            "recalled" if action == "recall" else "edited",
            {"by": by, "deliveries": {str(k): v for k, v in changes.items()}},
            now,
        )


# --- import, accounts and retention -----------------------------------------------------------


def import_message(
    user_id: int,
    title: str,
    body: str,
    format: str,
    url: str | None,
    status: str,
    idempotency_key: str,
    at: float,
    source: dict[str, Any],
) -> int:
    """A finished message from another system, with an `imported` event; its id."""
    (message_id,) = insert_returning_ids(
        "message",
        IMPORTED_COLUMNS,
        [
            (
                user_id,
                title,
                body,
                format,
                url,
                Message.priority.default,
                status,
                status,
                idempotency_key,
                at,
                at,
                at,
            )
        ],
    )
    add_event(message_id, "imported", source, at)
    return message_id


def move_messages(from_user: int, to_user: int) -> int:
    """Give every message of one user to another (an account merge); how many moved.

    An idempotency key the target already uses is dropped from the moved message.
    """
    execute(RELEASE_CLASHING_KEYS, (from_user, to_user))
    return execute(MOVE_MESSAGES, (to_user, from_user))


def purge_messages(ids: list[int]) -> None:
    """Delete messages with their deliveries and events (retention)."""
    if not ids:
        return
    marks = _ids(len(ids))
    for sql in (DELETE_EVENTS_OF, DELETE_DELIVERIES_OF, DELETE_MESSAGES):
        execute(sql.format(ids=marks), tuple(ids))


def purge_events(ids: list[int]) -> None:
    """Delete timeline events by id (retention)."""
    if ids:
        execute(DELETE_EVENTS.format(ids=_ids(len(ids))), tuple(ids))


# --- reads of the timeline (any thread) -------------------------------------------------------


@dataclass(frozen=True)
class TimelineEvent:
    id: int
    message_id: int
    at: float
    type: str
    detail: Any
    message_status: str


def events_after(after_id: int, user_id: int | None, limit: int) -> list[TimelineEvent]:
    """Events above `after_id`, oldest first, of one user's messages (None: everyone's)."""
    owner, args = ("", ()) if user_id is None else ("AND m.user_id = ?", (user_id,))
    return [
        TimelineEvent(r[0], r[1], r[2], r[3], MessageEvent.detail.python_value(r[4]), r[5])
        for r in select_rows(EVENTS_AFTER.format(owner=owner), (after_id, *args, limit))
    ]


def last_event_id() -> int:
    """The highest event id so far (0 when there is none)."""
    return select_rows(LAST_EVENT_ID)[0][0] or 0


def timeline(message_id: int) -> list[tuple[float, str, Any]]:
    """(at, type, detail) of one message's events, oldest first."""
    return [
        (at, kind, MessageEvent.detail.python_value(detail))
        for at, kind, detail in select_rows(EVENTS_OF, (message_id,))
    ]
