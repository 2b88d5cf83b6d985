"""RFC 3339 in and out: the API speaks strings, the database stores epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def to_rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_datetime(value: datetime) -> float:
    return value.timestamp()
