"""The channel pool: sends one delivery through one channel plugin, per-channel rate limited.

Also POSTs a finished message's callback_url. Workers only talk to the services;
outcomes, fallbacks and final message states are written by the actor thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import peewee
import requests

from messagepusher.actors import lifecycle, netguard
from messagepusher.actors.channels import REGISTRY, build_channel
from messagepusher.actors.channels.base import OutboundMessage, SendContext, SendResult
from messagepusher.actors.dispatcher import send_entry
from messagepusher.supervisor.actor import Job, PoolActor
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
    config: dict[str, Any] | None
    config_error: str | None
    message: OutboundMessage
    created_at: float


@dataclass
class CallbackTask:
    message_id: int
    url: str
    body: dict[str, Any]


def outbound(message: Message) -> OutboundMessage:
    """The channel's view of a stored message (pure)."""
    fetched = None
    if message.fetched and message.fetched.get("status") == "ok":
        fetched = {"title": message.fetched.get("title"), "text": message.fetched.get("text")}
    ai = None
    if message.ai_result and message.ai_result.get("status") == "ok":
        ai = {"task": message.ai_result.get("task"), "result": message.ai_result.get("result"),
              "label": message.ai_result.get("label"), "tags": message.ai_result.get("tags")}
    return OutboundMessage(
        id=message.id, title=message.title, body=message.body, format=message.format, url=message.url,
        priority=message.priority, fetched=fetched, ai=ai, created_at=to_rfc3339(message.created_at) or "",
    )


def message_result(message_id: int) -> dict[str, Any]:
    """{id, status, deliveries} as POSTed to callback_url and returned by the API."""
    message = Message.get_by_id(message_id)
    deliveries = [
        {"id": d.id, "channel": {"id": d.channel_id, "name": d.channel_name, "type": d.channel_type},
         "status": d.status, "attempts": d.attempts, "last_error": d.last_error,
         "response_code": d.response_code, "sent_at": to_rfc3339(d.sent_at)}
        for d in Delivery.select().where(Delivery.message == message_id).order_by(Delivery.id)
    ]
    return {"id": message.id, "status": message.status, "deliveries": deliveries}


class ChannelPoolActor(PoolActor):
    """Every hook runs in the channel_pool actor thread except `work` (a pool worker)."""

    name = "channel_pool"
    workers_setting = "channel_pool"

    def setup(self) -> None:
        super().setup()
        self.local = threading.local()
        self.buckets = BucketMap()

    # --- actor thread: before the send -------------------------------------------------

    def prepare(self, entries: list[Entry]) -> dict[int, Any]:
        tasks: dict[int, Any] = {}
        sends = [e for e in entries if e.kind == "send"]
        for e in entries:
            if e.kind == "callback":
                tasks[e.id] = CallbackTask(e.payload["message_id"], e.payload["url"], message_result(e.payload["message_id"]))
            elif e.kind != "send":
                self.mailbox.nack(e, self.owner, f"unknown entry kind {e.kind!r}", permanent=True)
        if not sends:
            return tasks
        ids = [e.payload["delivery_id"] for e in sends]
        rows = {
            d.id: d
            for d in Delivery.select(Delivery, Message, Channel)
            .join(Message).switch(Delivery).join(Channel, peewee.JOIN.LEFT_OUTER)
            .where(Delivery.id.in_(ids))
        }
        deferred: dict[float, list[int]] = {}
        settled: list[int] = []
        sending: list[int] = []
        for e in sends:
            d = rows.get(e.payload["delivery_id"])
            if d is None or d.status in lifecycle.DELIVERY_FINAL or d.message.status == "cancelled":
                settled.append(e.id)  # deleted, already sent (a replay), or cancelled
                continue
            channel = d.channel if d.channel_id else None
            wait = self._rate_wait(channel, d.channel_type)
            if wait > 0:
                deferred.setdefault(round(time.time() + wait, 3), []).append(e.id)
                continue
            config, error = None, None
            if channel is None:
                error = "the channel was deleted"
            else:
                try:
                    config = self.runtime.secretbox.decrypt(channel.config)
                except Exception as exc:  # noqa: BLE001 - a broken secret fails this delivery only
                    error = str(exc)
            tasks[e.id] = SendTask(d.id, d.message_id, d.channel_type, config, error, outbound(d.message),
                                   d.message.created_at)
            sending.append(d.id)
        for e_id in settled:
            self.mailbox.ack(e_id, self.owner)
        for until, e_ids in deferred.items():
            self.mailbox.defer(e_ids, self.owner, until)
        if sending:
            now = time.time()
            Delivery.update(status="sending", updated_at=now).where(Delivery.id.in_(sending)).execute()
            message_ids = {tasks[e.id].message_id for e in sends if e.id in tasks}
            Message.update(status="sending", updated_at=now).where(
                Message.id.in_(message_ids) & Message.status.not_in(lifecycle.MESSAGE_FINAL)
            ).execute()
        return tasks

    def _rate_wait(self, channel: Channel | None, channel_type: str) -> float:
        if channel is None:
            return 0.0
        cls = REGISTRY.get(channel_type)
        per_minute = getattr(cls, "rate_per_minute", 0) or self.settings.channel_pool.default_rate_per_minute
        if not per_minute:
            return 0.0
        return self.buckets.take(channel.id, per_minute / 60.0, max(1.0, per_minute / 6))

    # --- worker thread: the send ----------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=32)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        return session

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
        ctx = SendContext(task.delivery_id, self._session(), timeout, allow_private, job.entry.attempts,
                          tuple(self.settings.security.allowed_private_targets))
        started = time.perf_counter()
        result = channel.send(task.message, ctx)
        self.runtime.metrics.step_latency.labels("send").observe(time.perf_counter() - started)
        return result

    def _post_callback(self, task: CallbackTask, allow_private: bool, timeout: float) -> SendResult:
        try:
            netguard.check_url(task.url, allow_private, tuple(self.settings.security.allowed_private_targets))
            response = self._session().post(task.url, data=json.dumps(task.body), timeout=timeout,
                                            headers={"Content-Type": "application/json"})
        except netguard.PrivateNetworkRefused as exc:
            return SendResult.permanent(str(exc))
        except (requests.RequestException, OSError, ValueError) as exc:
            return SendResult.retry(f"callback failed: {exc}")
        if 200 <= response.status_code < 300:
            return SendResult.sent(response.status_code)
        if response.status_code >= 500 or response.status_code == 429:
            return SendResult.retry(f"callback answered HTTP {response.status_code}", response.status_code)
        return SendResult.permanent(f"callback answered HTTP {response.status_code}", response.status_code)

    # --- actor thread: after the send -------------------------------------------------------

    def apply(self, job: Job) -> set[str]:
        result: SendResult = job.result if job.error is None else SendResult.retry(
            f"{type(job.error).__name__}: {job.error}")
        entry = job.entry
        if isinstance(job.task, CallbackTask):
            self._settle_entry(entry, result)
            return set()
        task: SendTask = job.task
        now = time.time()
        delivery = Delivery.get_or_none(Delivery.id == task.delivery_id)
        if delivery is None:
            self.mailbox.ack(entry.id, self.owner)
            return set()
        fields: dict[str, Any] = {"attempts": entry.attempts, "response_code": result.response_code,
                                  "response": (result.response or "")[:2000] or None, "updated_at": now}
        wake: set[str] = set()
        if result.status == "sent":
            fields.update(status="sent", sent_at=now, last_error=None)
            self.mailbox.ack(entry.id, self.owner)
            self._event(task.message_id, now, "delivery_sent", delivery, result)
            self.runtime.metrics.end_to_end.observe(max(0.0, now - task.created_at))
        else:
            state = self.mailbox.nack(entry, self.owner, result.detail, result.retry_after,
                                      permanent=result.status == "permanent")
            if state == "failed":
                fields.update(status="pending", last_error=result.detail)
                self._event(task.message_id, now, "delivery_retry", delivery, result)
            else:
                final = "failed" if result.status == "permanent" else "dead"
                fields.update(status=final, last_error=result.detail)
                self._event(task.message_id, now, f"delivery_{final}", delivery, result)
                wake |= self._fallback(delivery, now)
        self.runtime.metrics.deliveries.labels(task.channel_type, fields["status"]).inc()
        Delivery.update(**fields).where(Delivery.id == delivery.id).execute()
        wake |= finish_if_final(self.mailbox, task.message_id, now)
        return wake

    def _settle_entry(self, entry: Entry, result: SendResult) -> None:
        if result.status == "sent":
            self.mailbox.ack(entry.id, self.owner)
        else:
            self.mailbox.nack(entry, self.owner, result.detail, result.retry_after,
                              permanent=result.status == "permanent")

    def _event(self, message_id: int, now: float, kind: str, delivery: Delivery, result: SendResult) -> None:
        detail: dict[str, Any] = {"delivery_id": delivery.id, "channel": delivery.channel_name}
        if result.response_code is not None:
            detail["response_code"] = result.response_code
        if result.detail:
            detail["error"] = result.detail[:500]
        if result.notes:
            detail["notes"] = result.notes
        MessageEvent.create(message=message_id, at=now, type=kind, detail=detail)

    def _fallback(self, delivery: Delivery, now: float) -> set[str]:
        """Hand a finally failed delivery to its channel's fallback, once per channel in a chain."""
        channel = Channel.get_or_none(Channel.id == delivery.channel_id) if delivery.channel_id else None
        if channel is None or channel.fallback_id is None:
            return set()
        chain, node = {delivery.channel_id}, delivery
        while node.fallback_of_id is not None and len(chain) <= MAX_FALLBACK_DEPTH:
            node = Delivery.get_by_id(node.fallback_of_id)
            chain.add(node.channel_id)
        fallback = Channel.get_or_none(Channel.id == channel.fallback_id)
        if fallback is None or not fallback.enabled or fallback.id in chain or len(chain) > MAX_FALLBACK_DEPTH:
            return set()
        message = Message.get_by_id(delivery.message_id)
        new = Delivery.create(message=message.id, channel=fallback.id, channel_name=fallback.name,
                              channel_type=fallback.type, status="pending", fallback_of=delivery.id,
                              created_at=now, updated_at=now)
        MessageEvent.create(message=message.id, at=now, type="fallback",
                            detail={"from": delivery.channel_name, "to": fallback.name, "delivery_id": new.id})
        self.mailbox.put_many([send_entry(new.id, message.id, message.priority, message.user_id)])
        return {"channel_pool"}


def finish_if_final(mailbox, message_id: int, now: float, forced: str | None = None) -> set[str]:
    """If every delivery of the message is final, set its final status and queue its callback.

    `forced` sets that final status regardless (a cancel). Runs inside the caller's
    write transaction. Returns recipients to wake.
    """
    views = [
        lifecycle.DeliveryView(d.id, d.status, d.fallback_of_id)
        for d in Delivery.select(Delivery.id, Delivery.status, Delivery.fallback_of).where(Delivery.message == message_id)
    ]
    status = forced or lifecycle.final_status(views)
    if status is None:
        return set()
    changed = (
        Message.update(status=status, finished_at=now, updated_at=now)
        .where((Message.id == message_id) & Message.status.not_in(lifecycle.MESSAGE_FINAL))
        .execute()
    )
    if not changed:
        return set()
    MessageEvent.create(message=message_id, at=now, type=status, detail=None)
    message = Message.get_by_id(message_id)
    if message.callback_url:
        mailbox.put_many([NewEntry("channel_pool", "callback", {"message_id": message_id, "url": message.callback_url},
                                   priority=message.priority, dedupe_key=f"callback:{message_id}",
                                   user_id=message.user_id)])
        return {"channel_pool"}
    return set()
