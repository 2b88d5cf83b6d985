"""The PushPlus (推送加) channel: a WeChat push through www.pushplus.plus.

Sends whole (PushPlus documents no size limit to truncate to); `code` 200 means accepted, not read.
"""

from __future__ import annotations

from pydantic import Field

from messagepusher.actors.channels.base import (
    ChannelConfig,
    OutboundMessage,
    SendResult,
    register,
)
from messagepusher.actors.channels.http_common import (
    Answer,
    BaseUrl,
    Call,
    OneRequestChannel,
    classify_body_code,
    json_call,
    message_title,
    render,
)

RETRY_CODES: dict[int, float | None] = {500: None, 999: None}  # server-side errors
HINTS = {
    900: "the PushPlus account is restricted",
    903: "token is not valid: copy it from pushplus.plus",
    905: "the PushPlus account is not bound to WeChat",
}


class PushPlusConfig(ChannelConfig):
    token: str = Field(min_length=1, description="Your PushPlus user token.")
    base_url: BaseUrl = Field(
        "https://www.pushplus.plus", description="PushPlus API root (or a relay)."
    )
    topic: str | None = Field(
        None, description="A group (topic) code to push to a group instead of yourself."
    )


def build_call(message: OutboundMessage, config: PushPlusConfig) -> tuple[Call, list[str]]:
    markdown = message.format != "text"  # an HTML body is reduced to text and sent as markdown
    payload = {
        "token": config.token,
        "title": message_title(message),
        "content": render(message, markdown=markdown, title=False),
        "template": "markdown" if markdown else "txt",
    }
    if config.topic:
        payload["topic"] = config.topic
    return json_call(f"{config.base_url}/send", payload), []


def classify_answer(answer: Answer, now: float) -> SendResult:
    """code 200 is sent; 500 and 999 (server errors) retry; any other code is permanent."""
    return classify_body_code(
        answer,
        now,
        "PushPlus",
        code_key="code",
        message_key="msg",
        ok=200,
        retry_codes=RETRY_CODES,
        hints=HINTS,
    )


@register
class PushPlusChannel(OneRequestChannel):
    type_name = "pushplus"
    Config = PushPlusConfig
    secret_fields = ("token",)
    config: PushPlusConfig

    build_call = staticmethod(build_call)
    classify_answer = staticmethod(classify_answer)
