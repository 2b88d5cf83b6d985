"""The retry policy: how long to wait before the next attempt, and when to give up.

Pure functions of the attempt count, the settings and a random source.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 600.0
    jitter: float = 0.2

    @classmethod
    def from_settings(cls, retry) -> RetryPolicy:
        return cls(
            retry.max_attempts, retry.base_delay_seconds, retry.max_delay_seconds, retry.jitter
        )

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after `attempts` failed tries (1 = the first send failed).

        min(max_delay, base * 2^(attempts-1)), spread by ±jitter so retries of many
        entries that failed together do not arrive together.
        """
        raw = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** max(0, attempts - 1))
        spread = raw * self.jitter * (2 * rand() - 1)
        return max(0.0, raw + spread)

    def exhausted(self, attempts: int, max_attempts: int | None = None) -> bool:
        """True when `attempts` tries (every send, the first included) used up the budget."""
        return attempts >= (max_attempts or self.max_attempts)
