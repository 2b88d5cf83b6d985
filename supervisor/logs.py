"""Logging set-up: text or JSON lines to stderr, an optional rotating file, and a ring buffer.

The ring buffer keeps recent records so admins can read the log over the API.
"""

from __future__ import annotations

import collections
import json
import logging
import logging.handlers
import sys
import threading
import time
from pathlib import Path
from typing import Any

from messagepusher.supervisor.config import LoggingSettings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class RingBuffer(logging.Handler):
    """Keeps the last N records in memory for GET /api/v1/admin/logs."""

    def __init__(self, size: int):
        super().__init__()
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self._lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break logging
            message = str(record.msg)
        with self._lock_:
            self.records.append(
                {
                    "at": record.created,
                    "level": record.levelname,
                    "logger": record.name,
                    "message": message,
                }
            )

    def query(
        self,
        level: str | None = None,
        since: float | None = None,
        q: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        minimum = logging.getLevelName(level.upper()) if level else 0
        if not isinstance(minimum, int):
            minimum = 0
        with self._lock_:
            rows = list(self.records)
        out = [
            r
            for r in rows
            if logging.getLevelName(r["level"]) >= minimum
            and (since is None or r["at"] >= since)
            and (not q or q.lower() in r["message"].lower())
        ]
        return out[-limit:]


ring = RingBuffer(5000)


def configure(settings: LoggingSettings, data_dir: Path) -> None:
    """Replace the root logger's handlers. Runs in the main thread at start and on reload."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter: logging.Formatter = (
        JsonFormatter() if settings.format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    if settings.format == "text":
        formatter.converter = time.gmtime
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    root.addHandler(stderr)
    if settings.file:
        path = Path(settings.file)
        if not path.is_absolute():
            path = data_dir / path
        path.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            path,
            maxBytes=settings.file_max_bytes,
            backupCount=settings.file_backups,
            encoding="utf-8",
        )
        rotating.setFormatter(formatter)
        root.addHandler(rotating)
    ring.records = collections.deque(ring.records, maxlen=settings.ring_size)
    root.addHandler(ring)
    set_level(settings.level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level)
    # Libraries that are chatty at INFO stay at WARNING unless we debug.
    for noisy in ("urllib3", "apscheduler", "waitress", "pykka", "trafilatura", "peewee"):
        logging.getLogger(noisy).setLevel("DEBUG" if level == "DEBUG" else "WARNING")
