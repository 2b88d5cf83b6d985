"""The channel pool: sends one delivery through one channel plugin, per-channel rate limited.

Also POSTs a finished message's callback_url. Workers only talk to the services;
outcomes, fallbacks and final message states are written by the actor thread.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from messagepusher.actors import lifecycle, netguard
from messagepusher.actors.channels import REGISTRY, build_channel
from messagepusher.actors.channels.base import OutboundMessage, SendContext, SendResult
from messagepusher.actors.channels.details_link import page_url
from messagepusher.actors.channels.transport import CallFailed, CallInvalid, CallTimeout, Transport
from messagepusher.actors.dispatcher import send_entry
from messagepusher.supervisor.actor import Job, PoolActor
from messagepusher.supervisor.db import execute, execute_many, is_sqlite, placeholders, select_rows
from messagepusher.supervisor.mailbox import Entry, NewEntry
from messagepusher.supervisor.models import Channel, Delivery, Message, MessageEvent
from messagepusher.supervisor.ratelimit import BucketMap
from messagepusher.supervisor.timefmt import to_rfc3339

log = logging.getLogger(__name__)

MAX_FALLBACK_DEPTH = 3


@dataclass
class SendTask:
    delivery_id: int
    message_id: int
    channel_type: str
    channel_name: str
    config: dict[str, Any] | None
    config_error: str | None
    message: OutboundMessage
    created_at: float


@dataclass
class CallbackTask:
    message_id: int
    url: str
    body: dict[str, Any]


@dataclass(frozen=True)
class SendRow:
    """What one send needs from the delivery, its message and its channel (one SELECT row)."""

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
    owner_preferences: str | None = None


SEND_ROWS = """
    SELECT d.id, d.message_id, d.channel_id, d.channel_name, d.channel_type, d.status,
           m.status, m.title, m.body, m.format, m.url, m.priority, m.fetched, m.ai_result, m.created_at,
           m.recipients, c.config, c.updated_at, m.public_token, u.preferences
      FROM delivery d JOIN message m ON m.id = d.message_id LEFT JOIN channel c ON c.id = d.channel_id
      JOIN "user" u ON u.id = m.user_id
     WHERE d.id IN ({ids})"""


def outbound(row: SendRow, public_url: str = "") -> OutboundMessage:
    """The channel's view of a stored message (pure)."""
    stored_fetched = json.loads(row.fetched) if row.fetched else None
    stored_ai = json.loads(row.ai_result) if row.ai_result else None
    fetched = None
    if stored_fetched and stored_fetched.get("status") == "ok":
        fetched = {"title": stored_fetched.get("title"), "text": stored_fetched.get("text")}
    ai = None
    if stored_ai and stored_ai.get("status") == "ok":
        ai = {
            "task": stored_ai.get("task"),
            "result": stored_ai.get("result"),
            "label": stored_ai.get("label"),
            "tags": stored_ai.get("tags"),
        }
    return OutboundMessage(
        id=row.message_id,
        title=row.title,
        body=row.body,
        format=row.format,
        url=row.url,
        priority=row.priority,
        fetched=fetched,
        ai=ai,
        created_at=to_rfc3339(row.created_at) or "",
        recipients=tuple(json.loads(row.recipients)) if row.recipients else (),
        details_url=page_url(
            public_url, row.public_token, json.loads(row.owner_preferences or "{}")
        ),
    )


def delivery_view(d: Delivery) -> dict[str, Any]:
    """One delivery as the API shows it and callback_url receives it."""
    return {
        "id": d.id,
        "channel": {"id": d.channel_id, "name": d.channel_name, "type": d.channel_type},
        "status": d.status,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "response_code": d.response_code,
        "sent_at": to_rfc3339(d.sent_at),
        "fallback_of": d.fallback_of_id,
    }


def message_result(message_id: int) -> dict[str, Any]:
    """{id, status, deliveries} as POSTed to callback_url."""
    message = Message.get_by_id(message_id)
    deliveries = Delivery.select().where(Delivery.message == message_id).order_by(Delivery.id)
    return {
        "id": message.id,
        "status": message.status,
        "deliveries": [delivery_view(d) for d in deliveries],
    }


class ChannelPoolActor(PoolActor):
    """Every hook runs in the channel_pool actor thread except `work` (a pool worker)."""

    name = "channel_pool"
    workers_setting = "channel_pool"

    def setup(self) -> None:
        super().setup()
        self.transport = Transport(pool_size=max(32, self.workers))
        self.buckets = BucketMap()
        self.configs: dict[int, tuple[float, dict[str, Any]]] = {}

    # --- actor thread: before the send -------------------------------------------------

    def prepare(self, entries: list[Entry]) -> dict[int, Any]:
        tasks: dict[int, Any] = {}
        sends = [e for e in entries if e.kind == "send"]
        for e in entries:
            if e.kind == "callback":
                tasks[e.id] = CallbackTask(
                    e.payload["message_id"],
                    e.payload["url"],
                    message_result(e.payload["message_id"]),
                )
            elif e.kind != "send":
                self.mailbox.nack(e, self.owner, f"unknown entry kind {e.kind!r}", permanent=True)
        if not sends:
            return tasks
        ids = [e.payload["delivery_id"] for e in sends]
        rows = {
            r[0]: SendRow(*r)
            for r in select_rows(SEND_ROWS.format(ids=placeholders(len(ids))), tuple(ids))
        }
        deferred: dict[float, list[int]] = {}
        settled: list[int] = []
        sending: list[int] = []
        for e in sends:
            d = rows.get(e.payload["delivery_id"])
            if d is None or d.status in lifecycle.DELIVERY_FINAL or d.message_status == "cancelled":
                settled.append(e.id)  # deleted, already sent (a replay), or cancelled
                continue
            wait = self._rate_wait(d.channel_id, d.channel_type)
            if wait > 0:
                deferred.setdefault(round(time.time() + wait, 3), []).append(e.id)
                continue
            config, error = None, None
            if d.channel_id is None or d.channel_config is None:
                error = "the channel was deleted"
            else:
                try:
                    config = self._config(d.channel_id, d.channel_updated_at, d.channel_config)
                except Exception as exc:  # noqa: BLE001 - a broken secret fails this delivery only
                    error = str(exc)
            tasks[e.id] = SendTask(
                d.delivery_id,
                d.message_id,
                d.channel_type,
                d.channel_name,
                config,
                error,
                outbound(d, self.settings.server.public_url),
                d.created_at,
            )
            sending.append(d.delivery_id)
        for e_id in settled:
            self.mailbox.ack(e_id, self.owner)
        for until, e_ids in deferred.items():
            self.mailbox.defer(e_ids, self.owner, until)
        if sending:
            now = time.time()
            message_ids = sorted({tasks[e.id].message_id for e in sends if e.id in tasks})
            finals = lifecycle.MESSAGE_FINAL
            execute(
                f"UPDATE delivery SET status = 'sending', updated_at = ? WHERE id IN ({placeholders(len(sending))})",
                (now, *sending),
            )
            execute(
                f"UPDATE message SET status = 'sending', updated_at = ? WHERE id IN ({placeholders(len(message_ids))}) "
                f"AND status NOT IN ({placeholders(len(finals))})",
                (now, *message_ids, *finals),
            )
        return tasks

    def _config(self, channel_id: int, updated_at: float | None, encrypted: str) -> dict[str, Any]:
        """The decrypted config, cached per channel until the channel changes (actor thread)."""
        cached = self.configs.get(channel_id)
        if cached is None or cached[0] != updated_at:
            if len(self.configs) > 10_000:
                self.configs.clear()
            cached = self.configs[channel_id] = (
                updated_at,
                self.runtime.secretbox.decrypt(encrypted),
            )
        return cached[1]

    def _rate_wait(self, channel_id: int | None, channel_type: str) -> float:
        """Seconds until this channel may send again under its service's rate limit."""
        if channel_id is None:
            return 0.0
        cls = REGISTRY.get(channel_type)
        per_minute = (
            getattr(cls, "rate_per_minute", 0) or self.settings.channel_pool.default_rate_per_minute
        )
        if not per_minute:
            return 0.0
        return self.buckets.take(channel_id, per_minute / 60.0, max(1.0, per_minute / 6))

    # --- worker thread: the send ----------------------------------------------------------

    def work(self, job: Job) -> SendResult:
        """Pool worker thread: one service call. Never raises for service errors."""
        task = job.task
        allow_private = self.settings.security.allow_private_networks
        timeout = self.settings.channel_pool.timeout_seconds
        if isinstance(task, CallbackTask):
            return self._post_callback(task, allow_private, timeout)
        if task.config_error:
            return SendResult.permanent(task.config_error)
        try:
            channel = build_channel(task.channel_type, task.config)
        except ValueError as exc:
            return SendResult.permanent(f"channel configuration is invalid: {exc}")
        ctx = SendContext(
            task.delivery_id,
            self.transport,
            timeout,
            allow_private,
            job.entry.attempts,
            tuple(self.settings.security.allowed_private_targets),
        )
        started = time.perf_counter()
        result = channel.send(task.message, ctx)
        self.runtime.metrics.step_latency.labels("send").observe(time.perf_counter() - started)
        return result

    def _post_callback(self, task: CallbackTask, allow_private: bool, timeout: float) -> SendResult:
        try:
            netguard.check_url(
                task.url, allow_private, tuple(self.settings.security.allowed_private_targets)
            )
            answer = self.transport.request(
                "POST",
                task.url,
                json.dumps(task.body).encode(),
                {"Content-Type": "application/json"},
                timeout,
            )
        except netguard.PrivateNetworkRefused as exc:
            return SendResult.permanent(str(exc))
        except (CallTimeout, CallFailed, OSError) as exc:
            return SendResult.retry(f"callback failed: {exc}")
        except (CallInvalid, ValueError) as exc:
            return SendResult.permanent(f"callback not possible: {exc}")
        if 200 <= answer.status < 300:
            return SendResult.sent(answer.status)
        if answer.status >= 500 or answer.status == 429:
            return SendResult.retry(f"callback answered HTTP {answer.status}", answer.status)
        return SendResult.permanent(f"callback answered HTTP {answer.status}", answer.status)

    def teardown(self, crashed: bool) -> None:
        super().teardown(crashed)
        if getattr(self, "transport", None) is not None:
            self.transport.close()

    # --- actor thread: after the send -------------------------------------------------------

    def apply_batch(self, jobs: list[Job]) -> set[str]:
        """Write a batch of send and callback outcomes in a few statements (actor thread).

        Sent: ack, delivery row, event. Retryable: nack with back-off. Permanent or out of
        attempts: the delivery ends failed or dead and its channel's fallback takes over.
        Then every touched message whose deliveries are all final gets its final status.
        """
        now = time.time()
        sends: list[tuple[Job, SendResult]] = []
        for job in jobs:
            result = (
                job.result
                if job.error is None
                else SendResult.retry(f"{type(job.error).__name__}: {job.error}")
            )
            if isinstance(job.task, CallbackTask):
                self._settle_callback(job, result, now)
            else:
                sends.append((job, result))
        if not sends:
            return set()
        ids = [job.task.delivery_id for job, _ in sends]
        existing = {
            row[0]
            for row in select_rows(
                f"SELECT id FROM delivery WHERE id IN ({placeholders(len(ids))})", tuple(ids)
            )
        }
        acks: list[int] = []
        updates: list[tuple] = []
        events: list[tuple] = []
        ended: list[int] = []
        for job, result in sends:
            task: SendTask = job.task
            if task.delivery_id not in existing:
                acks.append(job.entry.id)  # the message was deleted meanwhile
                continue
            response = (result.response or "")[:2000] or None
            if result.status == "sent":
                acks.append(job.entry.id)
                status, error, kind = "sent", None, "delivery_sent"
                self.runtime.metrics.end_to_end.observe(max(0.0, now - task.created_at))
            else:
                state = self.mailbox.nack(
                    job.entry,
                    self.owner,
                    result.detail,
                    result.retry_after,
                    permanent=result.status == "permanent",
                )
                if state == "failed":
                    status, kind = "pending", "delivery_retry"
                else:
                    status = "failed" if result.status == "permanent" else "dead"
                    kind = f"delivery_{status}"
                    ended.append(task.delivery_id)
                error = result.detail
            updates.append(
                (
                    status,
                    job.entry.attempts,
                    result.response_code,
                    response,
                    error,
                    now if status == "sent" else None,
                    result.remote_id if status == "sent" else None,
                    now,
                    task.delivery_id,
                )
            )
            events.append((task.message_id, now, kind, _event_detail(task, result)))
            self.runtime.metrics.deliveries.labels(task.channel_type, status).inc()
        self.mailbox.ack_many(acks, self.owner)
        execute_many(
            "UPDATE delivery SET status = ?, attempts = ?, response_code = ?, response = ?, last_error = ?, "
            "sent_at = COALESCE(?, sent_at), remote_id = COALESCE(?, remote_id), updated_at = ? "
            "WHERE id = ?",
            updates,
        )
        execute_many(
            "INSERT INTO message_event (message_id, at, type, detail) VALUES (?, ?, ?, ?)", events
        )
        wake: set[str] = set()
        for delivery_id in ended:
            wake |= self._fallback(Delivery.get_by_id(delivery_id), now)
        return wake | finish_if_final(self.mailbox, {job.task.message_id for job, _ in sends}, now)

    def _settle_callback(self, job: Job, result: SendResult, now: float) -> None:
        """Ack or nack a callback entry and put the outcome on the message's timeline (actor
        thread, inside apply_batch's transaction). A refused or failed callback is also logged
        (the URL's host only: its path or query may hold a token)."""
        task: CallbackTask = job.task
        detail: dict[str, Any] = {"attempt": job.entry.attempts}
        if result.response_code is not None:
            detail["response_code"] = result.response_code
        if result.status == "sent":
            self.mailbox.ack(job.entry.id, self.owner)
            kind = "callback_sent"
        else:
            state = self.mailbox.nack(
                job.entry,
                self.owner,
                result.detail,
                result.retry_after,
                permanent=result.status == "permanent",
            )
            if state == "lost":
                return  # another worker holds the entry now; it records its own outcome
            kind = "callback_retry" if state == "failed" else "callback_failed"
            detail["error"] = (result.detail or "")[:500]
            log.warning(
                "callback of message %d to %s %s: %s",
                task.message_id,
                urlsplit(task.url).hostname,
                "will be retried" if state == "failed" else "failed for good",
                result.detail,
            )
        if Message.select().where(Message.id == task.message_id).exists():  # not purged meanwhile
            MessageEvent.create(message=task.message_id, at=now, type=kind, detail=detail)

    def _fallback(self, delivery: Delivery, now: float) -> set[str]:
        """Hand a finally failed delivery to its channel's fallback, once per channel in a chain."""
        channel = (
            Channel.get_or_none(Channel.id == delivery.channel_id) if delivery.channel_id else None
        )
        if channel is None or channel.fallback_id is None:
            return set()
        chain, node = {delivery.channel_id}, delivery
        while node.fallback_of_id is not None and len(chain) <= MAX_FALLBACK_DEPTH:
            node = Delivery.get_by_id(node.fallback_of_id)
            chain.add(node.channel_id)
        fallback = Channel.get_or_none(Channel.id == channel.fallback_id)
        if (
            fallback is None
            or not fallback.enabled
            or fallback.id in chain
            or len(chain) > MAX_FALLBACK_DEPTH
        ):
            return set()
        message = Message.get_by_id(delivery.message_id)
        new = Delivery.create(
            message=message.id,
            channel=fallback.id,
            channel_name=fallback.name,
            channel_type=fallback.type,
            status="pending",
            fallback_of=delivery.id,
            created_at=now,
            updated_at=now,
        )
        MessageEvent.create(
            message=message.id,
            at=now,
            type="fallback",
            detail={"from": delivery.channel_name, "to": fallback.name, "delivery_id": new.id},
        )
        self.mailbox.put_many([send_entry(new.id, message.id, message.priority, message.user_id)])
        return {"channel_pool"}


def _event_detail(task: SendTask, result: SendResult) -> str:
    detail: dict[str, Any] = {"delivery_id": task.delivery_id, "channel": task.channel_name}
    if result.response_code is not None:
        detail["response_code"] = result.response_code
    if result.detail:
        detail["error"] = result.detail[:500]
    if result.notes:
        detail["notes"] = result.notes
    return MessageEvent.detail.db_value(detail)


def finish_if_final(
    mailbox, message_ids: int | set[int], now: float, forced: str | None = None
) -> set[str]:
    """Give every message whose deliveries are all final its final status, and queue callbacks.

    `forced` sets that final status regardless (a cancel). Runs inside the caller's write
    transaction, in a few statements for the whole batch. Returns recipients to wake.
    On PostgreSQL the open messages are locked before their deliveries are read, so two
    processes finishing the last deliveries of one message cannot both miss (or both
    write) its final status; on SQLite the write transaction already serializes them.
    """
    ids = sorted(message_ids) if isinstance(message_ids, set) else [message_ids]
    finals = lifecycle.MESSAGE_FINAL
    open_messages = select_rows(
        f"SELECT id, callback_url, priority, user_id FROM message WHERE id IN ({placeholders(len(ids))}) "
        f"AND status NOT IN ({placeholders(len(finals))}) ORDER BY id{'' if is_sqlite() else ' FOR UPDATE'}",
        (*ids, *finals),
    )
    if not open_messages:
        return set()
    open_ids = tuple(row[0] for row in open_messages)
    views: dict[int, list[lifecycle.DeliveryView]] = {m: [] for m in open_ids}
    for delivery_id, message_id, status, fallback_of in select_rows(
        f"SELECT id, message_id, status, fallback_of_id FROM delivery WHERE message_id IN ({placeholders(len(open_ids))})",
        open_ids,
    ):
        views[message_id].append(lifecycle.DeliveryView(delivery_id, status, fallback_of))
    finished, events, callbacks = [], [], []
    for message_id, callback_url, priority, user_id in open_messages:
        status = forced or lifecycle.final_status(views[message_id])
        if status is None:
            continue
        finished.append((status, now, now, message_id))
        events.append((message_id, now, status, None))
        if callback_url:
            callbacks.append(
                NewEntry(
                    "channel_pool",
                    "callback",
                    {"message_id": message_id, "url": callback_url},
                    priority=priority,
                    dedupe_key=f"callback:{message_id}",
                    user_id=user_id,
                )
            )
    execute_many(
        "UPDATE message SET status = ?, finished_at = ?, updated_at = ? WHERE id = ?", finished
    )
    execute_many(
        "INSERT INTO message_event (message_id, at, type, detail) VALUES (?, ?, ?, ?)", events
    )
    mailbox.put_many(callbacks)
    return {"channel_pool"} if callbacks else set()
