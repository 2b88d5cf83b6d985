"""Server-Sent Events: the stream slots that keep streams from taking every HTTP thread, and the stream loop.

Pure apart from the clock and the wait passed in; the resources in resources/streams.py supply the rows.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from messagepusher.http.errors import APIError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One SSE event: `id` is what the client sends back as Last-Event-ID."""

    id: str
    name: str
    data: dict[str, Any]


def encode(event: Event) -> bytes:
    """The event's wire form; data is one line of JSON, so no newline can split it."""
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.name}\ndata: {data}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"


class StreamSlots:
    """Counts open streams per user and in total, in this process. Thread-safe.

    `acquire` raises APIError 429 with Retry-After when a limit is reached; every
    successful acquire must be paired with one `release` (the stream's finally).
    """

    def __init__(
        self,
        per_user: int,
        total: int,
        retry_after: float,
        on_change: Callable[[int], None] = lambda _open: None,
    ):
        self.per_user = per_user
        self.total = total
        self.retry_after = retry_after
        self.on_change = on_change  # told the number of open streams (a metrics gauge)
        self._open: dict[int, int] = {}
        self._lock = threading.Lock()

    def acquire(self, user_id: int) -> None:
        with self._lock:
            mine = self._open.get(user_id, 0)
            if mine >= self.per_user:
                raise self._refused(
                    f"you already have {mine} open streams, the most one user may have "
                    "(streams.max_per_user); close one or retry later",
                    "streams.max_per_user",
                    self.per_user,
                )
            if sum(self._open.values()) >= self.total:
                raise self._refused(
                    f"the server has {self.total} open streams, its limit (streams.max_total, "
                    "at most half of server.threads); retry later or poll the list endpoints",
                    "streams.max_total",
                    self.total,
                )
            self._open[user_id] = mine + 1
            self.on_change(sum(self._open.values()))

    def release(self, user_id: int) -> None:
        with self._lock:
            left = self._open.get(user_id, 0) - 1
            if left > 0:
                self._open[user_id] = left
            else:
                self._open.pop(user_id, None)
            self.on_change(sum(self._open.values()))

    def _refused(self, message: str, setting: str, limit: int) -> APIError:
        wait = max(1, math.ceil(self.retry_after))
        return APIError(
            429,
            "too_many_streams",
            message,
            {"setting": setting, "limit": limit, "retry_after": wait},
            headers={"Retry-After": str(wait)},
        )


def run_stream(
    poll: Callable[[], list[Event]],
    keepalive_seconds: float,
    max_seconds: float,
    poll_seconds: float,
    wait: Callable[[float], bool],
    now: Callable[[], float],
    on_close: Callable[[], None],
) -> Iterator[bytes]:
    """The response body of one stream: events as `poll` finds them, keep-alives, then the end.

    Runs in the HTTP worker thread serving the stream, which it holds until the stream ends:
    after `max_seconds`, when `wait` returns True (the server is stopping), or when the client
    has gone (waitress raises out of the yield and closes the generator). `on_close` runs
    exactly once in every case. An exception from `poll` is logged and ends the stream
    cleanly; the client reconnects with its Last-Event-ID and misses nothing.
    """
    started = last_sent = now()
    try:
        # The reconnection delay a client should wait, and the headers go out with this chunk.
        yield f"retry: {int(poll_seconds * 1000) + 1000}\n\n".encode()
        while now() - started < max_seconds:
            try:
                events = poll()
            except Exception:  # noqa: BLE001 - a busy or lost database ends this stream only
                log.warning("an event stream ended: reading its rows failed", exc_info=True)
                return
            for event in events:
                yield encode(event)
            if events:
                last_sent = now()
                continue
            if now() - last_sent >= keepalive_seconds:
                yield KEEPALIVE
                last_sent = now()
            if wait(poll_seconds):
                return
    finally:
        on_close()
