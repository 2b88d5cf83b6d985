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
    json_at,
    json_call,
    keep_remote_id,
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
    return keep_remote_id(
        classify_status(answer, now, "Gotify", HINTS), json_at(answer.json(), "id")
    )


@register
class GotifyChannel(OneRequestChannel):
    type_name = "gotify"
    Config = GotifyConfig
    secret_fields = ("token",)
    config: GotifyConfig

    build_call = staticmethod(build_call)
    classify_answer = staticmethod(classify_answer)

    def recall(self, remote_id: str | None, ctx: SendContext) -> ChangeResult:
        return ChangeResult(
            "not_supported",
            "deleting a Gotify message needs a client token; this channel holds an application token",
        )
