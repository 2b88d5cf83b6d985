"""Token buckets: per API key and user at the door, per channel in the channel pool.

`TokenBucket` and `BucketMap` are pure arithmetic over an injectable clock for one process;
`SharedBuckets` keeps the buckets in the database, so a limit holds for every process and
node together. The caller decides what to do with a wait.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable

import peewee

from messagepusher.supervisor.db import database

log = logging.getLogger(__name__)


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


# --- shared by every process and node ---------------------------------------------------

# A take is one statement on SQLite (3.35+) and PostgreSQL alike: the row refills by the time
# since its stamp (never backwards, should two hosts' clocks differ) at :rate up to :burst,
# then grants :want tokens if that many are there, else :need, else none, and RETURNING says
# what it granted and what is left. Every SET expression reads the row as it was before the
# statement; `excluded` is the row the INSERT offered (a new bucket: full, less its grant).
_ELAPSED = "(CASE WHEN :now > rate_bucket.stamp THEN :now - rate_bucket.stamp ELSE 0.0 END)"
_REFILLED = (
    f"(CASE WHEN rate_bucket.tokens + {_ELAPSED} * :rate < :burst "
    f"THEN rate_bucket.tokens + {_ELAPSED} * :rate ELSE :burst END)"
)
_GRANT = (
    f"(CASE WHEN {_REFILLED} >= :want THEN :want WHEN {_REFILLED} >= :need THEN :need ELSE 0.0 END)"
)
TAKE_SQL = f"""
INSERT INTO rate_bucket (name, tokens, stamp, granted) VALUES (:name, :fresh_tokens, :now, :fresh_grant)
ON CONFLICT (name) DO UPDATE SET
    tokens = {_REFILLED} - {_GRANT},
    granted = {_GRANT},
    stamp = CASE WHEN :now > rate_bucket.stamp THEN :now ELSE rate_bucket.stamp END
RETURNING tokens, granted
"""
# A take lost in a PostgreSQL crash only lets a bucket refill early, so its commit need not
# wait for the WAL to reach the disk (on a busy disk that wait is milliseconds per request).
# Only a take in a transaction of its own is relaxed, never a caller's transaction.
_NAMED = re.compile(r":([a-z_]+)")
_TAKE_ORDER = _NAMED.findall(TAKE_SQL)
_TAKE_POSITIONAL = _NAMED.sub("?", TAKE_SQL)

# How many seconds of a bucket's rate a process takes from the shared row at once and then
# spends locally: fewer writes at high rates, and at most this much of one second's budget
# (rounded down to whole tokens) sits unspent in one process. Below 1/PREFETCH_SECONDS
# tokens a second every take goes to the row.
PREFETCH_SECONDS = 0.05


def grant_for(available: float, want: float, need: float) -> float:
    """What a take of at least `need` (asking for `want`) gets from `available` tokens."""
    if available >= want:
        return want
    if available >= need:
        return need
    return 0.0


class SharedBuckets:
    """Token buckets in the `rate_bucket` table, one row per `scope:key`, shared by all processes.

    Same `take` as BucketMap: 0 when allowed, else the seconds until the tokens would be there.
    Thread-safe; runs in the caller's thread on its own connection (a write outside any open
    transaction commits at once). A database error is logged and the take allowed: the limit
    is a guard, not a reason to refuse work the database may still take.
    """

    def __init__(self, scope: str, now: Callable[[], float] = time.time):
        self.scope = scope
        self.now = now
        self._reserve: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, key: object, rate: float, burst: float, n: float = 1.0) -> float:
        if rate <= 0:
            return 0.0
        name = f"{self.scope}:{key}"[:255]
        with self._lock:
            held = self._reserve.get(name, 0.0)
            if held >= n:
                self._reserve[name] = held - n
                return 0.0
        burst = max(float(burst), 1.0, float(n))
        want = max(float(n), float(math.floor(rate * PREFETCH_SECONDS)))
        try:
            left, granted = self._take_row(name, float(rate), burst, want, float(n))
        except peewee.PeeweeException as exc:
            log.warning("rate limit %s not checked, the request is let through: %s", name, exc)
            return 0.0
        if granted >= n:
            if granted > n:
                with self._lock:
                    self._reserve[name] = self._reserve.get(name, 0.0) + granted - n
            return 0.0
        return (n - left) / rate

    def _take_row(
        self, name: str, rate: float, burst: float, want: float, need: float
    ) -> tuple[float, float]:
        fresh_grant = grant_for(burst, want, need)
        values = {
            "name": name,
            "now": float(self.now()),
            "rate": rate,
            "burst": burst,
            "want": want,
            "need": need,
            "fresh_tokens": burst - fresh_grant,
            "fresh_grant": fresh_grant,
        }
        db = database.obj
        params = tuple(values[k] for k in _TAKE_ORDER)
        with db.dialect.relaxed_commit():
            row = db.execute_sql(db.dialect.sql(_TAKE_POSITIONAL), params).fetchone()
        return float(row[0]), float(row[1])
