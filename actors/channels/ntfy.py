"""The ntfy channel: a push to a topic on ntfy.sh or a self-hosted server, published as JSON.

Truncates (never splits) the message to 4096 UTF-8 bytes; priority 1–5 maps directly.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

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
    render,
    truncate,
    truncation_note,
    utf8_len,
)

MESSAGE_LIMIT_BYTES = 4096
TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")
HINTS = {
    401: "the server wants a token: set token",
    403: "token may not publish to this topic",
    413: "the message is larger than the server allows",
}


class NtfyConfig(ChannelConfig):
    topic: str = Field(description="The topic: 1–64 letters, digits, - or _.")
    token: str | None = Field(None, description="An access token (tk_…) for protected topics.")
    base_url: BaseUrl = Field("https://ntfy.sh", description="The ntfy server.")

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not TOPIC.fullmatch(value):
            raise ValueError("must be 1–64 letters, digits, - or _ (ntfy's topic names)")
        return value


def build_call(message: OutboundMessage, config: NtfyConfig) -> tuple[Call, list[str]]:
    markdown = message.format == "markdown"
    full = render(message, markdown=markdown, title=False)
    text, cut = truncate(full, MESSAGE_LIMIT_BYTES, utf8_len)
    notes = (
        [truncation_note("message", utf8_len(full), MESSAGE_LIMIT_BYTES, "bytes")] if cut else []
    )
    payload: dict = {
        "topic": config.topic,
        "message": text,
        "priority": min(5, max(1, message.priority)),
        "markdown": markdown,
    }
    if message.title.strip():
        payload["title"] = message.title.strip()
    if message.url:
        payload["click"] = message.url
    ai = message.ai or {}
    classified = ai.get("result")
    if ai.get("task") == "classify" and isinstance(classified, dict) and classified.get("tags"):
        payload["tags"] = [str(tag) for tag in classified["tags"]]
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
    return json_call(f"{config.base_url}/", payload, headers), notes


def classify_answer(answer: Answer, now: float) -> SendResult:
    """2xx is sent; 429 (Retry-After honoured) and 5xx retry; other 4xx are permanent."""
    return keep_remote_id(classify_status(answer, now, "ntfy", HINTS), json_at(answer.json(), "id"))


@register
class NtfyChannel(OneRequestChannel):
    type_name = "ntfy"
    Config = NtfyConfig
    secret_fields = ("token",)
    config: NtfyConfig

    build_call = staticmethod(build_call)
    classify_answer = staticmethod(classify_answer)

    def recall(self, remote_id: str | None, ctx: SendContext) -> ChangeResult:
        return ChangeResult(
            "not_supported",
            "ntfy keeps a published message until it expires; its API has no delete for it",
        )
