"""Rate limits at the door: token buckets per API key and per user for every message-sending operation.

Runs after authentication and before any resource touches the database; limits are read live
from `security.rate_limit` on each request, so a run-time config change applies at once. The
buckets live in the database (supervisor/ratelimit.SharedBuckets), so a limit holds for all
processes and nodes together, not for each.
"""

from __future__ import annotations

import math

import falcon

from messagepusher.accounts.ratelimit import BucketMap, SharedBuckets
from messagepusher.http.errors import APIError

# Every operation that needs this scope sends (or re-sends) messages, and takes one token.
LIMITED_PERMISSION = "messages:send"


class ThrottleMiddleware:
    """Refuses a request over its key's or its user's budget with 429 `rate_limited` and Retry-After.

    Runs in the HTTP worker thread; raises APIError 429. A rate of 0 switches that limit off.
    """

    def __init__(self, runtime, buckets: BucketMap | SharedBuckets | None = None):
        self.runtime = runtime
        self.buckets = buckets or SharedBuckets("http", runtime.clock.now)

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource, params
    ) -> None:
        op = getattr(req.context, "op", None)
        if op is not None and op.permission == LIMITED_PERMISSION:
            self.check(req)

    def check(self, req: falcon.Request) -> None:
        """Take one token for the request's principal, or raise APIError 429.

        Also called directly (as `runtime.throttle`) by resources that authenticate on their
        own, such as the compat /push endpoint. Runs in the HTTP worker thread.
        """
        principal = req.context.principal
        if principal is None:
            return
        limits = self.runtime.settings.security.rate_limit
        if principal.key_id is not None:
            wait = self.buckets.take(
                f"key:{principal.key_id}", limits.per_key_per_second, limits.per_key_burst
            )
            if wait > 0:
                raise _refused(
                    wait,
                    f"API key {principal.key_id}",
                    limits.per_key_per_second,
                    limits.per_key_burst,
                    "per_key",
                )
        wait = self.buckets.take(
            f"user:{principal.user_id}", limits.per_user_per_second, limits.per_user_burst
        )
        if wait > 0:
            raise _refused(
                wait,
                f"user {principal.username}",
                limits.per_user_per_second,
                limits.per_user_burst,
                "per_user",
            )


def _refused(wait: float, who: str, rate: float, burst: int, setting: str) -> APIError:
    seconds = max(1, math.ceil(wait))
    return APIError(
        429,
        "rate_limited",
        f"rate limit of {who} reached: {rate:g} requests/s with bursts of {burst} "
        f"(security.rate_limit.{setting}_per_second / {setting}_burst); retry in {seconds} s",
        {"retry_after": seconds, "limit": setting},
        headers={"Retry-After": str(seconds)},
    )
