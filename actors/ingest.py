"""The ingest actor: validates channels and persists accepted messages with group commit.

HTTP threads call `IngestClient.accept`; the actor drains every waiting draft and
commits them in one transaction, answering each caller only after that commit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pykka

from messagepusher.messages import store
from messagepusher.supervisor.actor import FLUSH, FlushSignal, MailboxActor
from messagepusher.supervisor.db import placeholders, select_rows, write_transaction
from messagepusher.supervisor.models import Channel, Message

log = logging.getLogger(__name__)

MAX_GROUP_DEPTH = 3
MAX_CACHED_USERS = 10_000

# What moves when any of a user's channels is created, changed or deleted: every write to a
# channel sets its updated_at, and a new row raises the count or the highest id.
CHANNEL_VERSIONS = """
    SELECT user_id, COUNT(*), MAX(updated_at), MAX(id) FROM channel
     WHERE user_id IN ({ids}) GROUP BY user_id"""
NO_CHANNELS = (0, None, None)


@dataclass
class Draft:
    """A validated request to send, not yet stored."""

    user_id: int
    title: str = ""
    body: str = ""
    format: str = "text"
    url: str | None = None
    priority: int = 3
    channels: list[str | int] | None = None
    ai: dict[str, Any] | None = None
    send_at: float | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    recipients: list[str] | None = None  # replaces the channels' own recipients (compat `to`)


@dataclass
class Accepted:
    id: int
    status: str
    replay: bool = False
    wake: tuple[str, ...] = ()


class IngestError(Exception):
    """A draft that cannot be accepted: status 409 or 422, with the field at fault."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, value: Any = None
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.value = (
            status,
            code,
            message,
            field,
            value,
        )


class IngestUnavailable(Exception):
    """The ingest actor is down or did not answer in time; nothing was stored."""


class ChannelCache:
    """Each user's channels by name and by id (as strings), loaded again only after a change.

    Ingest's actor thread asks for a batch's users once per batch: one small query tells
    whose channels changed since they were loaded, in this process or any other, and only
    those are read again. `invalidate` (HTTP worker threads, after a change through the
    API) drops a user's entry at once. Thread-safe; database errors propagate.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[int, tuple[tuple, dict[str, Channel]]] = {}

    def invalidate(self, user_id: int) -> None:
        with self._lock:
            self._users.pop(user_id, None)

    def for_users(self, user_ids: Iterable[int]) -> dict[int, dict[str, Channel]]:
        ids = sorted(set(user_ids))
        versions = {
            row[0]: tuple(row[1:])
            for row in select_rows(CHANNEL_VERSIONS.format(ids=placeholders(len(ids))), tuple(ids))
        }
        found: dict[int, dict[str, Channel]] = {}
        with self._lock:
            for user_id in ids:
                cached = self._users.get(user_id)
                if cached is not None and cached[0] == versions.get(user_id, NO_CHANNELS):
                    found[user_id] = cached[1]
        stale = [u for u in ids if u not in found]
        if not stale:
            return found
        loaded: dict[int, dict[str, Channel]] = {u: {} for u in stale}
        for row in Channel.select().where(Channel.user.in_(stale)):
            by_key = loaded[row.user_id]
            by_key[row.name] = row
            by_key[str(row.id)] = row
        with self._lock:
            if len(self._users) + len(stale) > MAX_CACHED_USERS:
                self._users.clear()
            for user_id in stale:
                self._users[user_id] = (versions.get(user_id, NO_CHANNELS), loaded[user_id])
        return found | loaded


class Answer:
    """One draft's outcome, set once by the ingest thread and taken once by its HTTP thread.

    A lock held from birth and released by `set`: one futex hand-over per request, where
    pykka's future went through a queue.Queue and its Condition (in the burst benchmark, the
    HTTP threads' largest cost after the request itself).
    """

    __slots__ = ("_ready", "_value")

    def __init__(self) -> None:
        self._ready = threading.Lock()
        self._ready.acquire()
        self._value: Any = None

    def set(self, value: Any) -> None:
        """Any thread (ingest's); call once."""
        self._value = value
        self._ready.release()

    def get(self, timeout: float) -> Any:
        """The value; waits up to `timeout` seconds (0: do not wait), else raises pykka.Timeout."""
        if not self._ready.acquire(timeout=timeout):
            raise pykka.Timeout(f"no answer within {timeout} seconds")
        return self._value


@dataclass
class _Pending:
    draft: Draft
    future: Answer = field(default_factory=Answer)


class IngestClient:
    """What HTTP threads hold. Survives ingest restarts: it looks the actor up on each call."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.queue: deque[_Pending] = deque()
        self.signal = FlushSignal()
        self.channels = ChannelCache()
        self.handoff = store.SendHandoff()
        self.leased = store.LeasedSends()

    def request_flush(self) -> bool:
        """Make sure a FLUSH is on its way to a live ingest actor; False when it is down."""
        if self.runtime.ref("ingest") is None:
            return False
        return self.signal.request(lambda: self.runtime.tell("ingest", FLUSH))

    def accept(self, draft: Draft, timeout: float = 30.0) -> Accepted:
        """Runs in the HTTP worker thread. Returns after the commit; raises IngestError or IngestUnavailable."""
        pending = _Pending(draft)
        self.queue.append(pending)
        if not self.request_flush():
            self._withdraw(pending)
            raise IngestUnavailable("ingest is restarting; try again")
        try:
            outcome = pending.future.get(timeout=timeout)
        except pykka.Timeout:
            raise IngestUnavailable(
                "ingest did not answer in time; the message may not be stored"
            ) from None
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _withdraw(self, pending: _Pending) -> None:
        with contextlib.suppress(ValueError):
            self.queue.remove(pending)


class IngestActor(MailboxActor):
    """Group commit. Every method runs in the ingest actor's thread."""

    name = "ingest"

    def setup(self) -> None:
        self.client: IngestClient = self.runtime.ingest

    def on_wake(self) -> None:
        """After a (re)start: drafts queued while the previous incarnation died are taken now."""
        self.on_flush()

    def on_flush(self) -> None:
        self.client.signal.taken()
        batch: list[_Pending] = []
        limit = self.settings.ingest.batch_max
        while self.client.queue and len(batch) < limit:
            batch.append(self.client.queue.popleft())
        if not batch:
            return
        try:
            self.faults.before_entry(self.name)
            outcomes = self.commit(batch)
        except Exception as exc:
            for p in batch:
                p.future.set(IngestUnavailable("storage failed; nothing was stored, try again"))
            raise exc
        for p, outcome in zip(batch, outcomes, strict=True):
            p.future.set(outcome)
        self.runtime.metrics_accepted(
            sum(1 for o in outcomes if isinstance(o, Accepted) and not o.replay)
        )
        for recipient in {r for o in outcomes if isinstance(o, Accepted) for r in o.wake}:
            self.runtime.wake(recipient)
        if self.client.queue:
            self.client.request_flush()

    def teardown(self, crashed: bool) -> None:
        while self.client.queue and not crashed:
            self.on_flush()

    def commit(self, batch: list[_Pending]) -> list[Accepted | IngestError]:
        """Validate and store a batch in one transaction; each draft's outcome in order."""
        now = self.runtime.clock.now()
        outcomes: list[Accepted | IngestError | None] = [None] * len(batch)
        accepted: list[tuple[int, store.NewMessage]] = []
        seen_keys: dict[tuple[int, str], int] = {}
        with write_transaction():
            channels = self.client.channels.for_users(p.draft.user_id for p in batch)
            for i, pending in enumerate(batch):
                draft = pending.draft
                try:
                    replay = self._idempotent_replay(draft, seen_keys, batch)
                    if replay is not None:
                        outcomes[i] = replay
                        continue
                    chosen = self._resolve_channels(draft, channels[draft.user_id])
                except IngestError as exc:
                    outcomes[i] = exc
                    continue
                accepted.append((i, store.NewMessage(draft, chosen)))
                if draft.idempotency_key:
                    seen_keys[(draft.user_id, draft.idempotency_key)] = i
            stored = store.accept(
                self.mailbox,
                [new for _, new in accepted],
                now,
                self.client.leased,
                self.settings.mailbox.lease_seconds,
            )
        for (i, _), row in zip(accepted, stored, strict=True):
            outcomes[i] = Accepted(row.id, row.status, wake=row.wake)
        # Committed: the channel pool may read these now.
        self.client.handoff.put(send for row in stored for send in row.sends)
        self.client.leased.put(send for row in stored for send in row.leased)
        return outcomes  # type: ignore[return-value]  # every slot is filled above

    def _idempotent_replay(
        self, draft: Draft, seen: dict[tuple[int, str], int], batch
    ) -> Accepted | None:
        if not draft.idempotency_key:
            return None
        earlier = seen.get((draft.user_id, draft.idempotency_key))
        if earlier is not None:
            first = batch[earlier].draft
            if first.request_hash != draft.request_hash:
                raise IngestError(
                    409,
                    "idempotency_conflict",
                    "Idempotency-Key was already used with a different request body",
                )
            raise IngestError(
                409, "idempotency_in_flight", "the same Idempotency-Key is being accepted; retry"
            )
        row = (
            Message.select(Message.id, Message.request_hash, Message.accepted_status)
            .where(
                (Message.user == draft.user_id) & (Message.idempotency_key == draft.idempotency_key)
            )
            .first()
        )
        if row is None:
            return None
        if row.request_hash != draft.request_hash:
            raise IngestError(
                409,
                "idempotency_conflict",
                "Idempotency-Key was already used with a different request body",
            )
        return Accepted(row.id, row.accepted_status, replay=True)

    def _resolve_channels(self, draft: Draft, by_key: dict[str, Channel]) -> list[Channel]:
        if draft.channels is None:
            chosen = [
                c
                for c in {id(c): c for c in by_key.values()}.values()
                if c.is_default and c.enabled
            ]
            if not chosen:
                raise IngestError(
                    422,
                    "no_channels",
                    "channels: none given and you have no default channel; "
                    "name channels or mark one as default",
                    "channels",
                )
        else:
            chosen = []
            for ref in draft.channels:
                row = by_key.get(str(ref))
                if row is None:
                    raise IngestError(
                        422,
                        "unknown_channel",
                        f"channels: no channel {ref!r}; list yours with GET /api/v1/channels",
                        "channels",
                        ref,
                    )
                if not row.enabled:
                    raise IngestError(
                        422,
                        "channel_disabled",
                        f"channels: channel {row.name!r} is disabled",
                        "channels",
                        ref,
                    )
                chosen.append(row)
        expanded: list[Channel] = []
        self._expand(chosen, by_key, expanded, depth=0)
        unique = list({c.id: c for c in expanded}.values())
        if not unique:
            raise IngestError(
                422,
                "no_channels",
                "channels: the chosen groups have no enabled members",
                "channels",
            )
        return unique

    def _expand(
        self, chosen: list[Channel], by_key: dict[str, Channel], out: list[Channel], depth: int
    ) -> None:
        for row in chosen:
            if row.type != "group":
                out.append(row)
                continue
            if depth >= MAX_GROUP_DEPTH:
                continue
            members = self.runtime.secretbox.decrypt(row.config).get("members", [])
            resolved = [
                by_key[str(m)] for m in members if str(m) in by_key and by_key[str(m)].enabled
            ]
            self._expand(resolved, by_key, out, depth + 1)
