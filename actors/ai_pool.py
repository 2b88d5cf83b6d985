"""The AI pool: runs a message's AI task (summarize, translate, classify) on its provider.

Retryable provider errors are retried by the mailbox; a final failure follows ai.on_failure.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from messagepusher.actors import lifecycle
from messagepusher.actors.ai import run_task
from messagepusher.actors.ai.base import AIError, AIRequest, AIResult
from messagepusher.actors.channel_pool import finish_if_final
from messagepusher.actors.dispatcher import route
from messagepusher.supervisor.actor import Job, PerJobPoolActor
from messagepusher.supervisor.http_session import new_session
from messagepusher.supervisor.mailbox import Entry
from messagepusher.supervisor.models import Delivery, Message, MessageEvent


class AIPoolActor(PerJobPoolActor):
    """Every hook runs in the ai_pool actor thread except `work` (a pool worker)."""

    name = "ai_pool"
    workers_setting = "ai_pool"

    def setup(self) -> None:
        super().setup()
        self.local = threading.local()

    def prepare(self, entries: list[Entry]) -> dict[int, Any]:
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
        if tasks:
            now = time.time()
            started = [t[0] for t in tasks.values()]
            Message.update(status="ai_processing", updated_at=now).where(
                Message.id.in_(started)
            ).execute()
            MessageEvent.insert_many(
                [
                    {"message": m, "at": now, "type": "ai_processing", "detail": None}
                    for m in started
                ]
            ).execute()
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
        message_id, request, provider = job.task
        now = time.time()
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
                MessageEvent.create(
                    message=message_id, at=now, type="ai_retry", detail={"error": error}
                )
                return set()
            result = {
                "status": "error",
                "task": request.task,
                "provider": provider or self.settings.ai.default_provider,
                "result": None,
                "error": error,
            }
        Message.update(ai_result=result, updated_at=now).where(Message.id == message_id).execute()
        MessageEvent.create(
            message=message_id,
            at=now,
            type="ai_done" if result["status"] == "ok" else "ai_failed",
            detail={"task": request.task, "provider": result["provider"], "error": result["error"]},
        )
        if result["status"] != "ok" and self.settings.ai.on_failure == "fail":
            Delivery.update(
                status="failed",
                last_error=f"not sent: the AI step failed and ai.on_failure is fail: "
                f"{result['error']}",
                updated_at=now,
            ).where((Delivery.message == message_id) & (Delivery.status == "pending")).execute()
            return finish_if_final(self.mailbox, message_id, now)
        return route(self.mailbox, message, "send", now)
