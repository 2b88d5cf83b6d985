"""The Slack channel: one message through an incoming-webhook URL.

Truncates (never splits) text to 40000 characters; 2xx is sent, 400/403/404/410 are permanent.
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
    Call,
    HttpUrl,
    OneRequestChannel,
    classify_status,
    json_call,
    render,
    truncate,
    truncation_note,
)

TEXT_LIMIT_CHARS = 40000
HINTS = {
    403: "the webhook was revoked or posting is prohibited",
    404: "the webhook or its channel does not exist: check url",
    410: "the channel is archived",
}


class SlackConfig(ChannelConfig):
    url: HttpUrl = Field(
        description="The incoming-webhook URL: https://hooks.slack.com/services/T…/B…/…."
    )


def escape(text: str) -> str:
    """Slack's three control characters; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_call(message: OutboundMessage, config: SlackConfig) -> tuple[Call, list[str]]:
    sections = []
    if message.title.strip():
        sections.append(f"*{escape(message.title.strip())}*")
    sections.append(escape(render(message, markdown=False, title=False)))
    full = "\n\n".join(section for section in sections if section)
    text, cut = truncate(full, TEXT_LIMIT_CHARS)
    notes = [truncation_note("text", len(full), TEXT_LIMIT_CHARS, "characters")] if cut else []
    return json_call(config.url, {"text": text}), notes


def classify_answer(answer: Answer, now: float) -> SendResult:
    """2xx is sent; 429 (Retry-After honoured) and 5xx retry; other 4xx are permanent."""
    return classify_status(answer, now, "Slack", HINTS)


@register
class SlackChannel(OneRequestChannel):
    type_name = "slack"
    rate_per_minute = 60  # 1 a second per incoming webhook
    Config = SlackConfig
    secret_fields = ("url",)
    config: SlackConfig

    build_call = staticmethod(build_call)
    classify_answer = staticmethod(classify_answer)

    def recall(self, remote_id: str | None, ctx: SendContext) -> ChangeResult:
        return ChangeResult(
            "not_supported",
            "a Slack incoming webhook cannot delete what it posted (that needs a bot token "
            "and chat.delete)",
        )

    def edit(
        self, remote_id: str | None, message: OutboundMessage, ctx: SendContext
    ) -> ChangeResult:
        return ChangeResult(
            "not_supported",
            "a Slack incoming webhook cannot edit what it posted (that needs a bot token "
            "and chat.update)",
        )
