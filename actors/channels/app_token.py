"""What the app channels share: an access token from the service, cached in the database for all processes.

The token is fetched once per credential (supervisor/access_tokens.py) and refreshed once when the service refuses it mid-run.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from messagepusher.actors.channels.base import OutboundMessage, SendContext, SendResult
from messagepusher.actors.channels.http_common import (
    Answer,
    Call,
    HttpChannel,
    perform,
    secret_values,
)
from messagepusher.supervisor import access_tokens

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


class TokenUnavailable(Exception):
    """The token endpoint refused or could not be reached; `result` says retry or permanent."""

    def __init__(self, result: SendResult):
        super().__init__(result.detail)
        self.result = result


class TokenChannel(HttpChannel):
    """A channel whose requests carry an access token fetched with the app's own credentials.

    Subclasses give pure module functions for the token request, reading its answer,
    the message requests and what counts as a refused token.
    """

    @abc.abstractmethod
    def token_key(self) -> str:
        """The cache row of this channel's credential (access_tokens.credential_key)."""

    @abc.abstractmethod
    def token_call(self) -> Call:
        """The request that fetches a new token."""

    @abc.abstractmethod
    def read_token(self, answer: Answer) -> tuple[str, float] | SendResult:
        """(token, seconds to expiry) from the token endpoint's answer, or why there is none."""

    @abc.abstractmethod
    def calls_with(self, message: OutboundMessage, token: str) -> tuple[list[Call], list[str]]:
        """The message requests carrying `token`, and notes about them."""

    @abc.abstractmethod
    def token_refused(self, answer: Answer) -> bool:
        """True when the service says the token is invalid or expired (fetch a new one)."""

    def calls(self, message: OutboundMessage, ctx: SendContext) -> tuple[list[Call], list[str]]:
        """HttpChannel's contract: the requests with the current shared token (`send` uses
        calls_with, to rebuild them after a refresh). Raises TokenUnavailable."""
        return self.calls_with(message, self._token(ctx))

    def _token(self, ctx: SendContext, stale: str | None = None) -> str:
        """The shared token; raises TokenUnavailable when the service gives none."""

        def fetch() -> tuple[str, float]:
            answer = self.exchange(ctx, self.token_call())
            got = answer if isinstance(answer, SendResult) else self.read_token(answer)
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

    def _exchange_with(self, ctx: SendContext, call: Call, token: str) -> Answer | SendResult:
        """`perform` with the token masked in error texts as well as the config's secrets."""
        secrets = [*secret_values(self.config, self.secret_fields), token]
        return perform(ctx, call, self.config.proxy, secrets)
