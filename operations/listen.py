"""`main.py listen`: a tiny device for the client channel that prints messages as they arrive.

Follows GET /api/v1/inbox/stream and reconnects with Last-Event-ID, so nothing is missed or repeated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import requests

STREAM_PATH = "/api/v1/inbox/stream"


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    name: str
    data: str


def parse_events(lines: Iterable[str]) -> Iterator[SseEvent]:
    """SSE events from the stream's lines (pure): comments skipped, data lines joined."""
    event_id: str | None = None
    name, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield SseEvent(event_id, name, "\n".join(data))
            event_id, name, data = None, "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            name = value
        elif field == "data":
            data.append(value)


def render(item: dict) -> str:
    """One message as the terminal shows it."""
    head = f"[{item.get('created_at') or ''}] {item.get('title') or '(no title)'}"
    parts = [head, item.get("body") or ""]
    if item.get("url"):
        parts.append(item["url"])
    return "\n".join(p for p in parts if p) + "\n"


class ListenError(Exception):
    """The server refused us for good (bad key, missing scope): the one line shown to the user."""


@dataclass
class Listener:
    """Runs in the CLI's main thread; `sleep` is injectable so the reconnect pacing is testable."""

    url: str
    key: str
    out: TextIO
    channel: str | None = None
    state_file: Path | None = None
    count: int = 0  # stop after this many messages; 0 = never
    sleep: Callable[[float], None] = time.sleep
    last_id: str | None = None
    printed: int = 0

    def run(self) -> int:
        """Follow the stream until `count` messages (or forever); raises ListenError on 401/403/404."""
        if self.state_file is not None and self.state_file.exists():
            self.last_id = self.state_file.read_text().strip() or None
        delay = 1.0
        while not self.count or self.printed < self.count:
            try:
                wait = self._follow()
                delay = 1.0
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ):
                wait, delay = delay, min(delay * 2, 30.0)
            if not self.count or self.printed < self.count:
                self.sleep(wait)
        return 0

    def _follow(self) -> float:
        """One connection; returns how long to wait before the next."""
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "text/event-stream"}
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        params = {"channel": self.channel} if self.channel else None
        with requests.get(
            self.url.rstrip("/") + STREAM_PATH,
            headers=headers,
            params=params,
            stream=True,
            timeout=(10, 120),
        ) as resp:
            if resp.status_code == 429:
                return float(resp.headers.get("Retry-After") or 5)
            if resp.status_code in (401, 403, 404, 422):
                raise ListenError(_error_text(resp))
            if resp.status_code != 200:
                return 5.0
            for event in parse_events(resp.iter_lines(decode_unicode=True)):
                if event.name != "message":
                    continue
                self.out.write(render(json.loads(event.data)))
                self.out.flush()
                self._remember(event.id)
                self.printed += 1
                if self.count and self.printed >= self.count:
                    break
        return 0.5

    def _remember(self, event_id: str | None) -> None:
        if event_id is None:
            return
        self.last_id = event_id
        if self.state_file is not None:
            self.state_file.write_text(event_id)


def _error_text(resp: requests.Response) -> str:
    try:
        return f"HTTP {resp.status_code}: {resp.json()['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code}: {resp.text[:200]}"
