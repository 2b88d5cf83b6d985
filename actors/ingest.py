"""The ingest actor: validates channels and persists accepted messages with group commit.

HTTP threads call `IngestClient.accept`; the actor drains every waiting draft and
commits them in one transaction, answering each caller only after that commit.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pykka

from messagepusher.actors import lifecycle
from messagepusher.actors.channels.details_link import new_token
from messagepusher.actors.dispatcher import send_entry
from messagepusher.supervisor.actor import FLUSH, FlushSignal, MailboxActor
from messagepusher.supervisor.db import execute_many, insert_returning_ids, write_transaction
from messagepusher.supervisor.mailbox import NewEntry
from messagepusher.supervisor.models import Channel, Message, MessageEvent

log = logging.getLogger(__name__)

MAX_GROUP_DEPTH = 3
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
DELIVERY_COLUMNS = (
    "message_id",
    "channel_id",
    "channel_name",
    "channel_type",
    "status",
    "attempts",
    "created_at",
    "updated_at",
)


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


@dataclass
class _Pending:
    draft: Draft
    future: pykka.Future = field(default_factory=pykka.ThreadingFuture)


class IngestClient:
    """What HTTP threads hold. Survives ingest restarts: it looks the actor up on each call."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.queue: deque[_Pending] = deque()
        self.signal = FlushSignal()

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
        now = time.time()
        outcomes: list[Accepted | IngestError | None] = [None] * len(batch)
        plans: list[tuple[int, Draft, list[Channel], str, str]] = []
        seen_keys: dict[tuple[int, str], int] = {}
        channel_cache: dict[int, dict[str, Channel]] = {}
        with write_transaction():
            for i, pending in enumerate(batch):
                draft = pending.draft
                try:
                    replay = self._idempotent_replay(draft, seen_keys, batch)
                    if replay is not None:
                        outcomes[i] = replay
                        continue
                    channels = self._resolve_channels(draft, channel_cache)
                except IngestError as exc:
                    outcomes[i] = exc
                    continue
                stage = lifecycle.first_stage(bool(draft.url), bool(draft.ai))
                status = lifecycle.initial_status(draft.send_at, now, stage)
                plans.append((i, draft, channels, stage, status))
                if draft.idempotency_key:
                    seen_keys[(draft.user_id, draft.idempotency_key)] = i
            if plans:
                self._insert(plans, outcomes, now)
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

    def _resolve_channels(
        self, draft: Draft, cache: dict[int, dict[str, Channel]]
    ) -> list[Channel]:
        if draft.user_id not in cache:
            rows = list(Channel.select().where(Channel.user == draft.user_id))
            by_key: dict[str, Channel] = {}
            for row in rows:
                by_key[row.name] = row
                by_key[str(row.id)] = row
            cache[draft.user_id] = by_key
        by_key = cache[draft.user_id]
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

    def _insert(self, plans, outcomes, now: float) -> None:
        to_json = Message.ai_request.db_value
        message_ids = insert_returning_ids(
            "message",
            MESSAGE_COLUMNS,
            [
                (
                    d.user_id,
                    d.title,
                    d.body,
                    d.format,
                    d.url,
                    d.priority,
                    status,
                    status,
                    to_json(d.ai),
                    d.send_at,
                    d.callback_url,
                    d.idempotency_key,
                    d.request_hash,
                    to_json(d.recipients),
                    now,
                    now,
                    new_token(),
                )
                for _, d, _, _, status in plans
            ],
        )
        delivery_ids = insert_returning_ids(
            "delivery",
            DELIVERY_COLUMNS,
            [
                (message_id, c.id, c.name, c.type, "pending", 0, now, now)
                for message_id, (_, _, channels, _, _) in zip(message_ids, plans, strict=True)
                for c in channels
            ],
        )
        events, entries = [], []
        cursor = 0
        for message_id, (i, d, channels, stage, status) in zip(message_ids, plans, strict=True):
            ids = delivery_ids[cursor : cursor + len(channels)]
            cursor += len(channels)
            detail = {"channels": [c.name for c in channels], "stage": stage}
            if status == "scheduled":
                detail["send_at"] = d.send_at
            events.append(
                (
                    message_id,
                    now,
                    status if status == "scheduled" else "accepted",
                    MessageEvent.detail.db_value(detail),
                )
            )
            available = d.send_at if d.send_at and d.send_at > now else None
            if stage == "send":
                entries.extend(
                    send_entry(did, message_id, d.priority, d.user_id, available) for did in ids
                )
            else:
                entries.append(
                    NewEntry(
                        lifecycle.STAGE_RECIPIENT[stage],
                        stage,
                        {"message_id": message_id},
                        priority=d.priority,
                        available_at=available,
                        user_id=d.user_id,
                    )
                )
            wake = () if available else (lifecycle.STAGE_RECIPIENT[stage],)
            outcomes[i] = Accepted(message_id, status, wake=wake)
        execute_many(
            "INSERT INTO message_event (message_id, at, type, detail) VALUES (?, ?, ?, ?)", events
        )
        self.mailbox.put_many(entries)
