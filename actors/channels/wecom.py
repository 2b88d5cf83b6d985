"""The WeCom (企业微信) group-robot channel: one text or markdown message per send.

Truncates (never splits): text to 2048 UTF-8 bytes, markdown to 4096; the body's errcode decides.
"""

from __future__ import annotations

from urllib.parse import urlencode

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
    render,
    truncate,
    truncation_note,
    utf8_len,
)

TEXT_LIMIT_BYTES = 2048
MARKDOWN_LIMIT_BYTES = 4096
RATE_LIMIT_SECONDS = 60.0  # 20 messages a minute per robot
RETRY_CODES: dict[int, float | None] = {45009: RATE_LIMIT_SECONDS, -1: None}  # -1: system busy
HINTS = {
    45009: "over 20 messages a minute for this robot",
    93000: "the webhook key is not valid: copy key= from the robot's webhook URL",
    93004: "the robot was removed from the group",
}


class WeComConfig(ChannelConfig):
    key: str = Field(min_length=1, description="The key= value of the robot's webhook URL.")
    base_url: BaseUrl = Field(
        "https://qyapi.weixin.qq.com", description="WeCom API root (or a relay)."
    )
    mentioned_list: list[str] = Field(
        default_factory=list, description='User ids to @ in text messages; "@all" for everyone.'
    )


def build_call(message: OutboundMessage, config: WeComConfig) -> tuple[Call, list[str]]:
    """The robot request: markdown messages as msgtype markdown, the rest as text."""
    markdown = message.format == "markdown"
    limit = MARKDOWN_LIMIT_BYTES if markdown else TEXT_LIMIT_BYTES
    full = render(message, markdown=markdown)
    content, cut = truncate(full, limit, utf8_len)
    notes = [truncation_note("content", utf8_len(full), limit, "bytes")] if cut else []
    if markdown:
        payload = {"msgtype": "markdown", "markdown": {"content": content}}
    else:
        text = {"content": content, "mentioned_list": config.mentioned_list}
        payload = {"msgtype": "text", "text": text}
    url = f"{config.base_url}/cgi-bin/webhook/send?{urlencode({'key': config.key})}"
    return json_call(url, payload), notes


def classify_answer(answer: Answer, now: float) -> SendResult:
    """errcode 0 is sent; 45009 (rate limit) and -1 (busy) retry; any other errcode is permanent."""
    return classify_body_code(
        answer,
        now,
        "WeCom",
        code_key="errcode",
        message_key="errmsg",
        ok=0,
        retry_codes=RETRY_CODES,
        hints=HINTS,
    )


@register
class WeComChannel(OneRequestChannel):
    type_name = "wecom"
    rate_per_minute = 20  # 20 a minute per robot
    Config = WeComConfig
    secret_fields = ("key",)
    config: WeComConfig

    build_call = staticmethod(build_call)
    classify_answer = staticmethod(classify_answer)
