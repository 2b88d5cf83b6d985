"""The fetcher actor: fetches a message's URL and keeps the readable text for later stages.

A failed fetch is recorded on the message and the message goes on without it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any

from messagepusher.messages import lifecycle, store
from messagepusher.outbound.http_session import new_session
from messagepusher.outbound.page_fetch import FetchResult, fetch_page
from messagepusher.supervisor.actor import Job, PerJobPoolActor
from messagepusher.supervisor.mailbox import Entry
from messagepusher.supervisor.models import Message

STORED_FIELDS = ("status", "title", "text", "error", "final_url", "http_status", "content_type")


class FetcherActor(PerJobPoolActor):
    """Every hook runs in the fetcher actor thread except `work` (a pool worker)."""

    name = "fetcher"
    workers_setting = "fetcher"

    def setup(self) -> None:
        super().setup()
        self.local = threading.local()

    def prepare(self, entries: list[Entry]) -> dict[int, Any]:
        """Actor thread, inside the claim's transaction: each message's URL; the messages
        taken show `fetching`. An entry whose message is final or gone is acked."""
        ids = [e.payload["message_id"] for e in entries]
        urls = {
            m.id: m.url
            for m in Message.select(Message.id, Message.url, Message.status).where(
                Message.id.in_(ids) & Message.status.not_in(lifecycle.MESSAGE_FINAL)
            )
        }
        tasks = {}
        for e in entries:
            message_id = e.payload["message_id"]
            if urls.get(message_id):
                tasks[e.id] = (message_id, urls[message_id])
            else:
                self.mailbox.ack(e.id, self.owner)  # cancelled or deleted meanwhile
        store.start_work([t[0] for t in tasks.values()], "fetch", self.runtime.clock.now())
        return tasks

    def work(self, job: Job) -> FetchResult:
        """Pool worker thread: one page fetch; fetch_page never raises."""
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = new_session(4)
        started = time.perf_counter()
        result = fetch_page(
            job.task[1],
            self.settings.fetcher,
            self.settings.security.allow_private_networks,
            session,
        )
        self.runtime.metrics.step_latency.labels("fetch").observe(time.perf_counter() - started)
        return result

    def apply(self, job: Job) -> set[str]:
        """Actor thread, inside the write-back transaction: ack, keep the outcome on the
        message and queue its next stage (a failed fetch goes on without the page)."""
        message_id = job.task[0]
        if job.error is not None:
            fetched = {
                "status": "error",
                "title": None,
                "text": None,
                "error": f"{type(job.error).__name__}: {job.error}",
            }
        else:
            data = asdict(job.result)
            fetched = {k: data.get(k) for k in STORED_FIELDS}
        self.mailbox.ack(job.entry.id, self.owner)
        return store.record_fetched(self.mailbox, message_id, fetched, self.runtime.clock.now())
