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

from messagepusher.accounts.ratelimit import SharedBuckets
from messagepusher.actors.channels import REGISTRY, build_channel
from messagepusher.actors.channels.base import Channel, OutboundMessage, SendContext, SendResult
from messagepusher.actors.channels.details_link import page_url
from messagepusher.actors.channels.transport import CallFailed, CallInvalid, CallTimeout, Transport
from messagepusher.messages import lifecycle, store
from messagepusher.messages.store import SEND_ROWS, SendRow
from messagepusher.outbound import netguard
from messagepusher.supervisor.actor import WAKE, Job, PoolActor
from messagepusher.supervisor.db import placeholders, select_rows
from messagepusher.supervisor.mailbox import Entry
from messagepusher.supervisor.models import Delivery, Message
from messagepusher.supervisor.timefmt import to_rfc3339

log = logging.getLogger(__name__)

# The final-state transition is the store's; its old name here stays for the callers that
# import it from the channel pool (tests/test_finish_race.py).
finish_if_final = store.finish_if_final


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
        self.buckets = SharedBuckets("channel", self.runtime.clock.now)
        self.configs: dict[int, tuple[float, dict[str, Any]]] = {}
        # Metric children looked up once: `labels()` takes a lock and builds a key per call.
        self.send_seconds = self.runtime.metrics.step_latency.labels("send")
        self.delivery_counts: dict[tuple[str, str], Any] = {}
        self.validated: dict[int, tuple[dict[str, Any] | None, str, Channel]] = {}
        # Ingest leases fresh sends straight to this pool while it has idle workers.
        self.leased = self.runtime.ingest.leased if self.runtime.ingest is not None else None
        if self.leased is not None:
            self.leased.open(self.owner, self.workers, self._leasable, self.notify_handover)

    # --- actor thread: before the send -------------------------------------------------

    def prepare(self, entries: list[Entry]) -> dict[int, Any]:
        """Actor thread, inside the claim's transaction: what each send needs, read once.

        Deliveries this process accepted a moment ago come from ingest's hand-off (checked
        unchanged by `SendHandoff.take`); the rest are read in one query.

        A delivery already final, of a cancelled or deleted message, is acked; one over
        its channel's rate is deferred; the rest and their messages are marked `sending`.
        """
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
        client = self.runtime.ingest  # None in a runtime without ingest: nothing is handed
        use_handoff = client is not None and self._ingest_rows_suffice()
        rows = client.handoff.take(ids, self.runtime.clock.now()) if use_handoff else {}
        unread = [i for i in ids if i not in rows]
        if unread:
            rows.update(
                (r[0], SendRow(*r))
                for r in select_rows(SEND_ROWS.format(ids=placeholders(len(unread))), tuple(unread))
            )
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
                deferred.setdefault(round(self.runtime.clock.now() + wait, 3), []).append(e.id)
                continue
            tasks[e.id] = self._task(d)
            sending.append(d.delivery_id)
        self.mailbox.ack_many(settled, self.owner)
        for until, e_ids in deferred.items():
            self.mailbox.defer(e_ids, self.owner, until)
        store.mark_sending(
            sending,
            sorted({tasks[e.id].message_id for e in sends if e.id in tasks}),
            self.runtime.clock.now(),
        )
        return tasks

    def _task(self, d: SendRow) -> SendTask:
        """What a worker needs for one send (actor thread; no database)."""
        config, error = None, None
        if d.channel_id is None or d.channel_config is None:
            error = "the channel was deleted"
        else:
            try:
                config = self._config(d.channel_id, d.channel_updated_at, d.channel_config)
            except Exception as exc:  # noqa: BLE001 - a broken secret fails this delivery only
                error = str(exc)
        return SendTask(
            d.delivery_id,
            d.message_id,
            d.channel_type,
            d.channel_name,
            config,
            error,
            outbound(d, self.settings.server.public_url),
            d.created_at,
        )

    def handed_over(self) -> list[Job]:
        """Actor thread: the sends ingest leased to this incarnation, ready to run.

        Sends leased to an earlier incarnation that stopped before taking them are made
        claimable (`Mailbox.recover`) and claimed by the next wake. A database error raises
        (a crash; the restart recovers them).
        """
        if self.leased is None:
            return []
        mine, stale = self.leased.take(self.owner)
        if stale:
            self.mailbox.recover(self.name, self.owner)
            self.actor_ref.tell(WAKE)
        return [Job(s.entry, self._task(s.row)) for s in mine]

    def in_flight_changed(self) -> None:
        if self.leased is not None:
            self.leased.set_room(self.owner, max(0, self.workers - len(self.in_flight)))

    def _leasable(self, channel_type: str) -> bool:
        """Ingest's actor thread: whether a fresh send of this type may skip the claim: its
        channel has no rate limit (the claim paces those) and no public page link needs
        the owner's preferences (read by the claim)."""
        return self._ingest_rows_suffice() and not self._rate_per_minute(channel_type)

    def _ingest_rows_suffice(self) -> bool:
        """Whether the send rows ingest hands over are all a send needs (any thread): they do
        not know the owner's page preference, so with a public URL set the rows are read
        (SEND_ROWS joins the owner) and the details link follows it."""
        return not self.settings.server.public_url

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
        per_minute = self._rate_per_minute(channel_type)
        if not per_minute:
            return 0.0
        return self.buckets.take(channel_id, per_minute / 60.0, max(1.0, per_minute / 6))

    def _rate_per_minute(self, channel_type: str) -> float:
        """The channel type's own send limit, else the pool's default; 0: none (any thread)."""
        cls = REGISTRY.get(channel_type)
        return (
            getattr(cls, "rate_per_minute", 0) or self.settings.channel_pool.default_rate_per_minute
        )

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
            channel = self._channel(task.channel_type, task.config)
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
        self.send_seconds.observe(time.perf_counter() - started)
        return result

    def _channel(self, channel_type: str, config: dict[str, Any] | None) -> Channel:
        """A fresh channel for one send, its config validated once per decrypted config.

        Pool worker thread. `prepare` hands every send of a channel the same config object
        until the channel changes, so that object (kept alive here, so its id is not reused)
        keys the validated config. Raises ValueError (ChannelConfigError) as build_channel.
        """
        cached = self.validated.get(id(config))
        if cached is None or cached[0] is not config or cached[1] != channel_type:
            if len(self.validated) > 10_000:
                self.validated.clear()
            cached = (config, channel_type, build_channel(channel_type, config))
            self.validated[id(config)] = cached
        built = cached[2]
        return type(built)(built.config)

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
        """Actor thread: stop taking leased sends (those waiting are released on an orderly
        stop, recovered by the next incarnation after a crash), then the pool's teardown."""
        leased = getattr(self, "leased", None)
        if leased is not None:
            waiting = leased.close(self.owner)
            if waiting and not crashed:
                self.mailbox.release([s.entry.id for s in waiting], self.owner)
        super().teardown(crashed)
        if getattr(self, "transport", None) is not None:
            self.transport.close()

    # --- actor thread: after the send -------------------------------------------------------

    def write_back_delay(self) -> float:
        """Outcomes of a light load wait up to `channel_pool.write_back_delay_ms` to share a
        write-back (the send itself is not delayed, only its row)."""
        return self.settings.channel_pool.write_back_delay_ms / 1000

    def apply_batch(self, jobs: list[Job]) -> set[str]:
        """Write a batch of send and callback outcomes (actor thread, in the write-back transaction).

        Sent: ack, delivery row, event. Retryable: nack with back-off. Permanent or out of
        attempts: the delivery ends failed or dead and its channel's fallback takes over.
        Then every touched message whose deliveries are all final gets its final status:
        `store.SendOutcomes` reads the touched messages once and decides from that.
        """
        now = self.runtime.clock.now()
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
        batch = store.SendOutcomes.open({job.task.message_id for job, _ in sends}, now)
        acks: list[int] = []
        for job, result in sends:
            task: SendTask = job.task
            if not batch.exists(task.delivery_id):
                acks.append(job.entry.id)  # the message was deleted meanwhile
                continue
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
                error = result.detail
            batch.record(
                task.delivery_id,
                status,
                job.entry.attempts,
                kind,
                _event_detail(task, result),
                result.response_code,
                (result.response or "")[:2000] or None,
                error,
                result.remote_id,
            )
            counter = self.delivery_counts.get((task.channel_type, status))
            if counter is None:
                counter = self.delivery_counts[(task.channel_type, status)] = (
                    self.runtime.metrics.deliveries.labels(task.channel_type, status)
                )
            counter.inc()
        self.mailbox.ack_many(acks, self.owner)
        return batch.commit(self.mailbox)

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
        store.record_callback(task.message_id, kind, detail, now)


def _event_detail(task: SendTask, result: SendResult) -> dict[str, Any]:
    detail: dict[str, Any] = {"delivery_id": task.delivery_id, "channel": task.channel_name}
    if result.response_code is not None:
        detail["response_code"] = result.response_code
    if result.detail:
        detail["error"] = result.detail[:500]
    if result.notes:
        detail["notes"] = result.notes
    return detail
