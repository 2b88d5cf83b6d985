"""The AI pool: runs a message's AI task (summarize, translate, classify) on its provider.

Retryable provider errors are retried by the mailbox; a final failure follows ai.on_failure.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from messagepusher.actors.ai import run_task
from messagepusher.actors.ai.base import AIError, AIRequest, AIResult
from messagepusher.messages import lifecycle, store
from messagepusher.outbound.http_session import new_session
from messagepusher.supervisor.actor import Job, PerJobPoolActor
from messagepusher.supervisor.mailbox import Entry
from messagepusher.supervisor.models import Message


class AIPoolActor(PerJobPoolActor):
    """Every hook runs in the ai_pool actor thread except `work` (a pool worker)."""

    name = "ai_pool"
    workers_setting = "ai_pool"

    def setup(self) -> None:
        super().setup()
        self.local = threading.local()

    def prepare(self, entries: list[Entry]) -> dict[int, Any]:
        """Actor thread, inside the claim's transaction: each message's AI request; the
        messages taken show `ai_processing`. An entry whose message is final, gone or has
        no AI step is acked."""
        ids = [e.payload["message_id"] for e in entries]
        messages = {
            m.id: m
            for m in Message.select().where(
                Message.id.in_(ids) & Message.status.not_in(lifecycle.MESSAGE_FINAL)
            )
        }
        tasks = {}
        for e in entries:
            m = messages.get(e.payload["message_id"])
            if m is None or not m.ai_request:
                self.mailbox.ack(e.id, self.owner)
                continue
            fetched_text = (
                (m.fetched or {}).get("text") if (m.fetched or {}).get("status") == "ok" else None
            )
            title = (m.fetched or {}).get("title") or m.title
            request = AIRequest(
                task=m.ai_request["task"],
                text=fetched_text or m.body or m.title,
                title=title or "",
                language=m.ai_request.get("language"),
            )
            tasks[e.id] = (m.id, request, m.ai_request.get("provider"))
        store.start_work([t[0] for t in tasks.values()], "ai", self.runtime.clock.now())
        return tasks

    def work(self, job: Job) -> AIResult:
        """Pool worker thread: one provider call; raises AIError on failure."""
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = new_session(4)
        _, request, provider = job.task
        started = time.perf_counter()
        try:
            return run_task(
                request,
                provider,
                self.settings.ai,
                session,
                self.settings.security.allow_private_networks,
            )
        finally:
            self.runtime.metrics.step_latency.labels("ai").observe(time.perf_counter() - started)

    def apply(self, job: Job) -> set[str]:
        """Actor thread, inside the write-back transaction: ack or nack; a result (or a final
        failure) is kept on the message, which goes on to its next stage or, when the step
        failed and ai.on_failure is fail, fails its pending deliveries."""
        message_id, request, provider = job.task
        now = self.runtime.clock.now()
        message = Message.get_or_none(Message.id == message_id)
        if message is None or message.status in lifecycle.MESSAGE_FINAL:
            self.mailbox.ack(job.entry.id, self.owner)
            return set()
        if job.error is None:
            r: AIResult = job.result
            result = {
                "status": "ok",
                "task": r.task,
                "provider": r.provider,
                "result": r.result,
                "label": r.label,
                "tags": r.tags,
                "model": r.model,
                "error": None,
            }
            self.mailbox.ack(job.entry.id, self.owner)
        else:
            error = str(job.error)
            retryable = (
                isinstance(job.error, AIError)
                and job.error.retryable
                or not isinstance(job.error, AIError)
            )
            retry_after = getattr(job.error, "retry_after", None)
            state = self.mailbox.nack(
                job.entry, self.owner, error, retry_after, permanent=not retryable
            )
            if state == "failed":
                store.record_ai_retry(message_id, error, now)
                return set()
            result = {
                "status": "error",
                "task": request.task,
                "provider": provider or self.settings.ai.default_provider,
                "result": None,
                "error": error,
            }
        return store.record_ai_result(
            self.mailbox,
            message,
            result,
            request.task,
            self.settings.ai.on_failure == "fail",
            now,
        )
