"""Token buckets: per API key and user at the door, per channel in the channel pool.

Pure arithmetic over an injectable clock; the caller decides what to do with a wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second up to `burst`. rate 0 means unlimited."""

    def __init__(self, rate: float, burst: float, now: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.now = now
        self.tokens = self.burst
        self.stamp = now()

    def take(self, n: float = 1.0) -> float:
        """Take n tokens; return 0 when allowed, else the seconds until they would be there."""
        if self.rate <= 0:
            return 0.0
        now = self.now()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


class BucketMap:
    """Buckets by key, made on first use. Thread-safe."""

    def __init__(self, now: Callable[[], float] = time.monotonic):
        self.now = now
        self._buckets: dict[object, TokenBucket] = {}
        self._lock = threading.Lock()

    def take(self, key: object, rate: float, burst: float, n: float = 1.0) -> float:
        if rate <= 0:
            return 0.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.rate != rate or bucket.burst != max(burst, 1.0):
                bucket = self._buckets[key] = TokenBucket(rate, burst, self.now)
            return bucket.take(n)
