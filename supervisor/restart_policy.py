"""Restart intensity and back-off for supervised children (one_for_one).

Pure bookkeeping over an injectable clock: no threads, no sleeping.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from messagepusher.supervisor.config import SupervisorSettings


@dataclass
class RestartPolicy:
    """At most `max_restarts` within `within_seconds` across all children, then give up."""

    max_restarts: int
    within_seconds: float
    backoff_initial_seconds: float
    backoff_max_seconds: float
    now: Callable[[], float] = time.monotonic
    _recent: deque[float] = field(default_factory=deque)
    _consecutive: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, sup: SupervisorSettings, now: Callable[[], float]) -> RestartPolicy:
        """The policy the `supervisor:` settings describe, timed by `now` (a monotonic clock)."""
        return cls(
            sup.max_restarts,
            sup.within_seconds,
            sup.backoff_initial_seconds,
            sup.backoff_max_seconds,
            now,
        )

    def give_up_reason(self, name: str, what: str = "restart intensity") -> str:
        """Why `name` is not restarted again: the limit `record` just refused. Pure."""
        return (
            f"{name} failed and {what} is exceeded "
            f"({self.max_restarts} restarts within {self.within_seconds:g}s); giving up"
        )

    def record(self, name: str) -> float | None:
        """Count a restart of `name`; return the delay before it, or None when past the limit."""
        now = self.now()
        while self._recent and now - self._recent[0] > self.within_seconds:
            self._recent.popleft()
        if len(self._recent) >= self.max_restarts:
            return None
        self._recent.append(now)
        n = self._consecutive.get(name, 0)
        self._consecutive[name] = n + 1
        if n == 0:
            return 0.0
        return min(self.backoff_max_seconds, self.backoff_initial_seconds * 2 ** (n - 1))

    def healthy(self, name: str) -> None:
        """The child has worked since its restart: its next crash starts back-off afresh."""
        self._consecutive.pop(name, None)

    def restarts_in_window(self) -> int:
        now = self.now()
        return sum(1 for t in self._recent if now - t <= self.within_seconds)


def is_hung(ping_age: float, stalled: float, timeout: float) -> bool:
    """A child is hung when its ping is overdue and it started or finished no message meanwhile.

    A ping queued behind a backlog is late but the child is busy, not hung.
    """
    return ping_age > timeout and stalled > timeout
