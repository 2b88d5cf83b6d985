"""What the app channels share: an access token from the service, cached in the database for all processes.

The token is fetched once per credential (accounts/access_tokens.py) and refreshed once when the service refuses it mid-run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from messagepusher.accounts import access_tokens
from messagepusher.actors.channels.base import (
    ChangeResult,
    OutboundMessage,
    SendContext,
    SendResult,
)
from messagepusher.actors.channels.http_common import (
    Answer,
    Built,
    Call,
    HttpChannel,
    as_calls,
    json_at,
    perform,
    secret_values,
)

DEFAULT_EXPIRES_IN = 7200.0  # what WeChat, WeCom and Feishu give; used when an answer has none


def lifetime(value: Any) -> float:
    """Seconds a token lives, from the answer's expires_in/expire; a missing or odd value
    counts as DEFAULT_EXPIRES_IN."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return DEFAULT_EXPIRES_IN
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_EXPIRES_IN
    return seconds if seconds > 0 else DEFAULT_EXPIRES_IN


def token_or_reason(
    answer: Answer,
    now: float,
    token: Any,
    expires_in: Any,
    classify_answer: Callable[[Answer, float], SendResult],
    missing: str,
) -> tuple[str, float] | SendResult:
    """(token, seconds to expiry) when the token endpoint gave one; else its answer classified
    like a send's, where an answer that reads as a success is permanent: `missing` (e.g.
    "WeChat answered without an access_token"), since base_url does not lead to the service.
    """
    if token:
        return str(token), lifetime(expires_in)
    result = classify_answer(answer, now)
    if result.status == "sent":
        return SendResult.permanent(
            f"{missing} ({answer.short}); check base_url", answer.status, answer.excerpt
        )
    return result


def access_token_answer(
    answer: Answer,
    now: float,
    classify_answer: Callable[[Answer, float], SendResult],
    service: str,
) -> tuple[str, float] | SendResult:
    """WeChat's and WeCom's token answer: HTTP 200 with access_token and expires_in, else an
    errcode read like a send's (`token_or_reason`)."""
    data = answer.json() if answer.status == 200 else None
    return token_or_reason(
        answer,
        now,
        json_at(data, "access_token"),
        json_at(data, "expires_in"),
        classify_answer,
        f"{service} answered without an access_token",
    )


class TokenUnavailable(Exception):
    """The token endpoint refused or could not be reached; `result` says retry or permanent."""

    def __init__(self, result: SendResult):
        super().__init__(result.detail)
        self.result = result


class TokenChannel(HttpChannel):
    """A channel whose requests carry an access token fetched with the app's own credentials.

    A subclass names its module's pure functions as static methods, and the config fields
    that make up its credential (besides base_url) in `credential_fields`.
    """

    credential_fields: ClassVar[tuple[str, ...]]
    missing_remote_id: ClassVar[str]  # why a delivery without the service's id cannot change
    token_call: ClassVar[Callable[[Any], Call]]  # (config): the request for a new token
    # (answer, now): (token, seconds to expiry) from the token endpoint's answer, or why not
    read_token: ClassVar[Callable[[Answer, float], tuple[str, float] | SendResult]]
    build_call: ClassVar[Callable[[OutboundMessage, Any, str], Built]]  # (message, config, token)
    # (answer): the service says the token is invalid or expired (fetch a new one)
    token_refused: ClassVar[Callable[[Answer], bool]]

    def token_key(self) -> str:
        """The cache row of this channel's credential (access_tokens.credential_key)."""
        parts = [getattr(self.config, name) for name in self.credential_fields]
        return access_tokens.credential_key(self.type_name, self.config.base_url, *parts)

    def calls_with(self, message: OutboundMessage, token: str) -> tuple[list[Call], list[str]]:
        """The message requests carrying `token`, and notes about them."""
        return as_calls(self.build_call(message, self.config, token))

    def calls(self, message: OutboundMessage, ctx: SendContext) -> tuple[list[Call], list[str]]:
        """HttpChannel's contract: the requests with the current shared token (`send` uses
        calls_with, to rebuild them after a refresh). Raises TokenUnavailable."""
        return self.calls_with(message, self._token(ctx))

    def _token(self, ctx: SendContext, stale: str | None = None) -> str:
        """The shared token; raises TokenUnavailable when the service gives none."""

        def fetch() -> tuple[str, float]:
            answer = self.exchange(ctx, self.token_call(self.config))
            got = answer if isinstance(answer, SendResult) else self.read_token(answer, self.now())
            if isinstance(got, SendResult):
                got.detail = f"cannot get an access token: {got.detail}"
                raise TokenUnavailable(got)
            return got

        try:
            return access_tokens.shared_token(self.token_key(), fetch, stale=stale, now=self.now)
        except access_tokens.TokenWaitTimeout as exc:
            raise TokenUnavailable(SendResult.retry(str(exc))) from None

    def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        """Send each request with the shared token; on a refused token fetch one new token and
        resend that request once.

        Runs in a channel-pool worker thread; blocks on the network and on short database
        statements. Does not raise for service, network or token errors: they come back as
        SendResult.retry or .permanent (a token refused again after the refresh is retried
        later). A failure after the first part says which parts were already sent.
        """
        try:
            token = self._token(ctx)
        except TokenUnavailable as exc:
            return exc.result
        calls, notes = self.calls_with(message, token)
        refreshed = False
        remote_ids: list[str] = []
        number = 0
        result = SendResult.permanent("nothing to send")
        while number < len(calls):
            answer = self._exchange_with(ctx, calls[number], token)
            if isinstance(answer, Answer) and self.token_refused(answer) and not refreshed:
                refreshed = True
                try:
                    token = self._token(ctx, stale=token)
                except TokenUnavailable as exc:
                    return exc.result
                calls, notes = self.calls_with(message, token)
                continue
            result = answer if isinstance(answer, SendResult) else self.classify(answer)
            if result.status != "sent":
                if number > 0:
                    result.notes.append(
                        f"part {number + 1} of {len(calls)} failed; parts 1–{number} were sent"
                    )
                return result
            if result.remote_id:
                remote_ids.append(result.remote_id)
            number += 1
        result.parts = len(calls)
        result.notes.extend(notes)
        if refreshed:
            result.notes.append("the access token was refused once and fetched again")
        result.remote_id = ",".join(remote_ids) or None
        return result

    def exchange_with_token(
        self, ctx: SendContext, build: Callable[[str], Call]
    ) -> Answer | SendResult:
        """One request `build(token)` with the shared token; on a refused token, fetch one new
        token and make it once more (the same rule as `send`). For recall and edit.

        Runs in the caller's thread (an HTTP worker); never raises: a token or network
        failure comes back as the SendResult that says why.
        """
        try:
            token = self._token(ctx)
        except TokenUnavailable as exc:
            return exc.result
        answer = self._exchange_with(ctx, build(token), token)
        if isinstance(answer, Answer) and self.token_refused(answer):
            try:
                token = self._token(ctx, stale=token)
            except TokenUnavailable as exc:
                return exc.result
            answer = self._exchange_with(ctx, build(token), token)
        return answer

    def change_with_token(
        self,
        remote_id: str | None,
        ctx: SendContext,
        build: Callable[[str, str], Call],
        read: Callable[[Answer | SendResult], ChangeResult],
    ) -> ChangeResult:
        """A recall or edit: `build(remote_id, token)` sent by `exchange_with_token`, its
        answer read by `read`; not supported when the send kept no id of the service's.

        Runs in the caller's thread (an HTTP worker); never raises.
        """
        if not remote_id:
            return ChangeResult("not_supported", self.missing_remote_id)
        return read(self.exchange_with_token(ctx, lambda token: build(remote_id, token)))

    def _exchange_with(self, ctx: SendContext, call: Call, token: str) -> Answer | SendResult:
        """`perform` with the token masked in error texts as well as the config's secrets."""
        secrets = [*secret_values(self.config, self.secret_fields), token]
        return perform(ctx, call, self.config.proxy, secrets)
