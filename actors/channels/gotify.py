"""The Gotify channel: a message to a self-hosted Gotify server with an application token.

Sends whole (Gotify has no message limit); priority 1–5 maps to Gotify's 0–10 (1→1, 3→5, 5→10).
"""

from __future__ import annotations

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
    BaseUrl,
    Call,
    OneRequestChannel,
    classify_status,
    json_call,
    message_title,
    render,
)

PRIORITY = {1: 1, 2: 3, 3: 5, 4: 8, 5: 10}
HINTS = {
    401: "token was rejected: use an application token",
    403: "token was rejected: use an application token, not a client token",
}


class GotifyConfig(ChannelConfig):
    base_url: BaseUrl = Field(description="Your Gotify server, e.g. https://gotify.example.com.")
    token: str = Field(min_length=1, description="An application token (not a client token).")


def build_call(message: OutboundMessage, config: GotifyConfig) -> tuple[Call, list[str]]:
    markdown = message.format == "markdown"
    extras: dict = {}
    if markdown:
        extras["client::display"] = {"contentType": "text/markdown"}
    if message.url:
        extras["client::notification"] = {"click": {"url": message.url}}
    payload: dict = {
        "title": message_title(message),
        "message": render(message, markdown=markdown, title=False),
        "priority": PRIORITY[min(5, max(1, message.priority))],
    }
    if extras:
        payload["extras"] = extras
    return json_call(f"{config.base_url}/message", payload, {"X-Gotify-Key": config.token}), []


def classify_answer(answer: Answer, now: float) -> SendResult:
    """2xx is sent; 429 and 5xx retry; other 4xx (a bad token, a bad payload) are permanent."""
    result = classify_status(answer, now, "Gotify", HINTS)
    data = answer.json()
    if result.status == "sent" and isinstance(data, dict) and data.get("id") is not None:
        result.remote_id = str(data["id"])
    return result


@register
class GotifyChannel(OneRequestChannel):
    type_name = "gotify"
    Config = GotifyConfig
    secret_fields = ("token",)
    config: GotifyConfig

    def build(self, message: OutboundMessage, ctx: SendContext) -> tuple[Call, list[str]]:
        return build_call(message, self.config)

    def classify(self, answer: Answer) -> SendResult:
        return classify_answer(answer, self.now())

    def recall(self, remote_id: str | None, ctx: SendContext) -> ChangeResult:
        return ChangeResult(
            "not_supported",
            "deleting a Gotify message needs a client token; this channel holds an application token",
        )
