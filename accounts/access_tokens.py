"""The shared access-token cache: one row per service credential, shared by every process and node.

A token is fetched by one process at a time (a refresh lease on its row) and reused by all until shortly before it expires.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from messagepusher.supervisor.db import execute, select_rows

REFRESH_MARGIN_SECONDS = 300.0  # refresh this long before the service's expiry
LEASE_SECONDS = 30.0  # a refresher that died frees the row after this long
POLL_SECONDS = 0.05  # how often a waiting process looks whether the refresher is done

# Plain SQL that SQLite (3.24+) and PostgreSQL both run as written: the refresh lease is a
# conditional UPDATE, which both serialise on the row, so no dialect-specific locking is needed
# and no database connection or lock is held while the token is fetched over the network.
ENSURE_ROW = (
    "INSERT INTO access_token (key, token, expires_at, lease_until, updated_at) "
    "VALUES (?, '', 0, 0, ?) ON CONFLICT (key) DO NOTHING"
)
READ_ROW = "SELECT token, expires_at, lease_until FROM access_token WHERE key = ?"
TAKE_LEASE = (
    "UPDATE access_token SET lease_until = ? WHERE key = ? AND lease_until = ? AND token = ?"
)
STORE_TOKEN = (
    "UPDATE access_token SET token = ?, expires_at = ?, lease_until = 0, updated_at = ? "
    "WHERE key = ?"
)
DROP_LEASE = "UPDATE access_token SET lease_until = 0 WHERE key = ? AND lease_until = ?"


class TokenWaitTimeout(Exception):
    """Another process held the refresh lease and no token appeared in time; worth retrying."""


Fetch = Callable[[], tuple[str, float]]  # -> (token, seconds until it expires)


def credential_key(service: str, *parts: str) -> str:
    """The row key for a credential: a SHA-256 of the service and its parts (app id, secret …).

    A changed secret gets a new row, so a token fetched with the old one is never used.
    """
    return hashlib.sha256("\x1f".join((service, *parts)).encode()).hexdigest()


def usable_until(fetched_at: float, expires_in: float) -> float:
    """When a token fetched at `fetched_at` stops being used: REFRESH_MARGIN_SECONDS before it
    expires, or at 90 % of its life when that is shorter than ten margins."""
    margin = min(REFRESH_MARGIN_SECONDS, expires_in / 10)
    return fetched_at + max(0.0, expires_in - margin)


def shared_token(
    key: str,
    fetch: Fetch,
    *,
    stale: str | None = None,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The cached token for `key`, fetched with `fetch` when there is none or it is past use.

    `stale` is a token the service refused (expired early, revoked): it is not returned
    again; if another process already replaced it, the replacement is returned without a
    fetch. Only one process fetches at a time; the others wait for its result for at most
    LEASE_SECONDS and raise TokenWaitTimeout after that.

    Runs in the caller's thread (a channel-pool worker) with short statements on its own
    connection; `fetch` runs outside any transaction. Whatever `fetch` raises propagates
    after the lease is dropped, so the next caller fetches again at once.
    """
    deadline = now() + LEASE_SECONDS
    while True:
        rows = select_rows(READ_ROW, (key,))
        if not rows:  # the first use of this credential; a read is all a cached token costs
            execute(ENSURE_ROW, (key, now()))
            continue
        token, expires_at, lease_until = rows[0]
        current = now()
        if token and token != stale and expires_at > current:
            return token
        if lease_until <= current:
            mine = current + LEASE_SECONDS
            if execute(TAKE_LEASE, (mine, key, lease_until, token)) == 1:
                return _refresh(key, fetch, mine, now)
        elif current >= deadline:
            raise TokenWaitTimeout(
                "another process is fetching the access token and did not finish within "
                f"{LEASE_SECONDS:g} s"
            )
        sleep(POLL_SECONDS)


def _refresh(key: str, fetch: Fetch, lease: float, now: Callable[[], float]) -> str:
    try:
        token, expires_in = fetch()
    except BaseException:
        execute(DROP_LEASE, (key, lease))
        raise
    fetched_at = now()
    execute(STORE_TOKEN, (token, usable_until(fetched_at, expires_in), fetched_at, key))
    return token
