"""RFC 3339 in and out: the API speaks strings, the database stores epoch seconds.

One rule for every time: it must fall in [EARLIEST, LATEST] in UTC, so that it always renders.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone

# 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z: every time the API accepts lies here; past the
# end, a datetime cannot render in UTC (and a float no longer holds milliseconds exactly).
EARLIEST = 0.0
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
# Stored rows from before the rule may lie outside it; rendering clamps them to what fits.
_RENDER_MIN = datetime(1, 1, 1, tzinfo=UTC).timestamp()

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?"
    r"([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


class TimeOutOfRange(ValueError):
    """A well-formed time outside [EARLIEST, LATEST]."""


def to_rfc3339(ts: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC with milliseconds; never raises (out-of-range clamps)."""
    if ts is None or not math.isfinite(ts):
        return None
    ts = min(max(ts, _RENDER_MIN), LATEST)
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_datetime(value: datetime) -> float:
    """Epoch seconds of an aware datetime; TimeOutOfRange unless it lies in the window."""
    try:
        ts = value.astimezone(UTC).timestamp()
    except (OverflowError, ValueError):
        raise TimeOutOfRange(_window_message()) from None
    return check_range(ts)


def check_range(ts: float) -> float:
    """`ts` itself when EARLIEST <= ts <= LATEST; TimeOutOfRange otherwise."""
    if not EARLIEST <= ts <= LATEST:
        raise TimeOutOfRange(_window_message())
    return ts


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 time with a zone (Z or ±hh:mm).

    Raises ValueError naming the expected form, or TimeOutOfRange for a valid time outside
    the window (including one whose UTC year would be 0 or 10000).
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("must be an RFC 3339 time with a zone, such as 2026-11-28T09:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    offset = timedelta(0)
    if zone not in ("Z", "z"):
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"has an impossible zone offset {zone}")
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
    # RFC 3339 allows a leap second (:60); it is read as the first instant of the next minute.
    leap = second == 60
    try:
        local = datetime(
            year, month, day, hour, minute, 59 if leap else second, micro, timezone(offset)
        )
        if leap:
            local += timedelta(seconds=1)
    except OverflowError:
        raise TimeOutOfRange(_window_message()) from None
    except ValueError as exc:
        raise ValueError(f"is not a real date and time ({exc})") from None
    return from_datetime(local)


def _window_message() -> str:
    return f"must lie between {to_rfc3339(EARLIEST)} and {to_rfc3339(LATEST)} once converted to UTC"
