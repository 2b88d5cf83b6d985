"""The one clock every timed decision reads: wall time for stored stamps, monotonic for intervals.

`Runtime.clock` is a `SystemClock`; tests pass a `FakeClock` and move it by hand, so
anything that decides by time can be driven without sleeping. Both are thread-safe.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What code that decides by time asks for."""

    def now(self) -> float:
        """Wall-clock seconds since the epoch (what is stored in rows)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never go backwards (for intervals and deadlines)."""


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to; `advance` moves both readings together."""

    def __init__(self, start: float = 1_700_000_000.0):
        self._lock = threading.Lock()
        self._now = start
        self._monotonic = 0.0

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move the clock forward; a negative step is refused with ValueError."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got {seconds}")
        with self._lock:
            self._now += seconds
            self._monotonic += seconds
