"""The Discord channel: one message through a channel webhook URL.

Truncates (never splits) content to 2000 characters and says so in the result's notes.
Posts with ?wait=true so Discord answers the message id; recall and edit use the webhook's
/messages/{id}.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field

from messagepusher.actors.channels.base import (
    ChangeResult,
    ChannelConfig,
    OutboundMessage,
    SendContext,
    SendResult,
    register,
)
from messagepusher.actors.channels.http_common import (
    Answer,
    Call,
    HttpUrl,
    OneRequestChannel,
    change_answer,
    classify_status,
    json_call,
    parse_retry_after,
    render,
    retry_after_from_json,
    truncate,
    truncation_note,
)

CONTENT_LIMIT_CHARS = 2000
HINTS = {
    401: "the webhook token in url is not valid",
    404: "the webhook does not exist (deleted?): check url",
}


class DiscordConfig(ChannelConfig):
    url: HttpUrl = Field(description="The webhook URL: https://discord.com/api/webhooks/ID/TOKEN.")
    username: str | None = Field(None, description="Post under this name instead of the webhook's.")


def build_call(message: OutboundMessage, config: DiscordConfig) -> tuple[Call, list[str]]:
    full = render(message, markdown=True)
    content, cut = truncate(full, CONTENT_LIMIT_CHARS)
    notes = (
        [truncation_note("content", len(full), CONTENT_LIMIT_CHARS, "characters")] if cut else []
    )
    # No @everyone or role pings from message text.
    payload: dict = {"content": content, "allowed_mentions": {"parse": []}}
    if config.username:
        payload["username"] = config.username
    return json_call(webhook_url(config.url, wait="true"), payload), notes


def webhook_url(url: str, suffix: str = "", **query: str) -> str:
    """The webhook URL with `suffix` on its path and `query` added (its thread_id kept)."""
    parts = urlsplit(url)
    params = [*parse_qsl(parts.query), *query.items()]
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix, query=urlencode(params)))


def message_id_of(answer: Answer) -> str | None:
    data = answer.json()
    return str(data["id"]) if isinstance(data, dict) and data.get("id") else None


def classify_answer(answer: Answer, now: float) -> SendResult:
    """2xx is sent; 429 retries after the body's retry_after (seconds); 5xx retries; other 4xx are permanent."""
    if answer.status != 429:
        result = classify_status(answer, now, "Discord", HINTS)
        if result.status == "sent":
            result.remote_id = message_id_of(answer)
        return result
    delay = retry_after_from_json(answer.json(), "retry_after")
    if delay is None:
        delay = parse_retry_after(answer.header("Retry-After"), now)
    return SendResult.retry(
        f"Discord rate limit: {answer.short}", answer.status, answer.excerpt, delay
    )


@register
class DiscordChannel(OneRequestChannel):
    type_name = "discord"
    rate_per_minute = 30  # about 30 a minute per webhook
    Config = DiscordConfig
    secret_fields = ("url",)
    config: DiscordConfig

    build_call = staticmethod(build_call)
    classify_answer = staticmethod(classify_answer)

    def recall(self, remote_id: str | None, ctx: SendContext) -> ChangeResult:
        """DELETE the webhook's message; Discord answers 204."""
        if not remote_id:
            return ChangeResult("not_supported", "Discord gave no message id for this delivery")
        call = Call("DELETE", webhook_url(self.config.url, f"/messages/{remote_id}"))
        return change_answer(self.exchange(ctx, call), "recalled", "Discord")

    def edit(
        self, remote_id: str | None, message: OutboundMessage, ctx: SendContext
    ) -> ChangeResult:
        """PATCH the webhook's message with the new content (truncated like a send)."""
        if not remote_id:
            return ChangeResult("not_supported", "Discord gave no message id for this delivery")
        built, _ = build_call(message, self.config)
        call = Call(
            "PATCH",
            webhook_url(self.config.url, f"/messages/{remote_id}"),
            built.body,
            built.headers,
        )
        return change_answer(self.exchange(ctx, call), "edited", "Discord")
