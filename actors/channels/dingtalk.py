"""The DingTalk (钉钉) custom-robot channel: signed text or markdown messages.

Truncates (never splits) content to 20000 UTF-8 bytes; the body's errcode decides.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote, quote_plus

from pydantic import Field

from messagepusher.actors.channels.base import (
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
    classify_body_code,
    json_call,
    message_title,
    render,
    truncate,
    truncation_note,
    utf8_len,
)

CONTENT_LIMIT_BYTES = 20000
THROTTLE_SECONDS = 600.0  # over 20 messages a minute, DingTalk throttles the robot for 10 minutes
RETRY_CODES: dict[int, float | None] = {130101: THROTTLE_SECONDS, -1: None}  # -1: system busy
HINTS = {
    130101: "sending too fast: over 20 messages a minute",
    300001: "access_token is not valid: copy access_token= from the robot's webhook URL",
    310000: "the robot's security settings refused it: keyword missing, signature "
    "(secret or this server's clock) wrong, or IP not allowed",
    400013: "the group is disabled",
}


class DingTalkConfig(ChannelConfig):
    access_token: str = Field(
        min_length=1, description="The access_token= value of the robot's webhook URL."
    )
    secret: str | None = Field(
        None,
        description='The "加签" signing secret (SEC…); leave out for keyword- or IP-secured robots.',
    )
    base_url: BaseUrl = Field(
        "https://oapi.dingtalk.com", description="DingTalk API root (or a relay)."
    )
    at_mobiles: list[str] = Field(
        default_factory=list, description="Mobile numbers to @ in text messages."
    )
    at_all: bool = Field(False, description="@ everyone in the group.")


def sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk's published signature, already URL-encoded for the query string."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return quote_plus(base64.b64encode(digest))


def build_call(
    message: OutboundMessage, config: DingTalkConfig, now: float
) -> tuple[Call, list[str]]:
    """The robot request; with a secret, signed with the time `now` (seconds)."""
    markdown = message.format == "markdown"
    full = render(message, markdown=markdown)
    content, cut = truncate(full, CONTENT_LIMIT_BYTES, utf8_len)
    notes = (
        [truncation_note("content", utf8_len(full), CONTENT_LIMIT_BYTES, "bytes")] if cut else []
    )
    at = {"atMobiles": config.at_mobiles, "isAtAll": config.at_all}
    if markdown:
        body = {"title": message_title(message), "text": content}
        payload = {"msgtype": "markdown", "markdown": body, "at": at}
    else:
        payload = {"msgtype": "text", "text": {"content": content}, "at": at}
    url = f"{config.base_url}/robot/send?access_token={quote(config.access_token, safe='')}"
    if config.secret:
        timestamp = str(int(now * 1000))
        url += f"&timestamp={timestamp}&sign={sign(config.secret, timestamp)}"
    return json_call(url, payload), notes


def classify_answer(answer: Answer, now: float) -> SendResult:
    """errcode 0 is sent; 130101 (throttled) and -1 (busy) retry; any other errcode is permanent."""
    return classify_body_code(
        answer,
        now,
        "DingTalk",
        code_key="errcode",
        message_key="errmsg",
        ok=0,
        retry_codes=RETRY_CODES,
        hints=HINTS,
    )


@register
class DingTalkChannel(OneRequestChannel):
    type_name = "dingtalk"
    rate_per_minute = 20  # 20 a minute, else 10 minutes throttled
    Config = DingTalkConfig
    secret_fields = ("access_token", "secret")
    config: DingTalkConfig

    classify_answer = staticmethod(classify_answer)

    def build(self, message: OutboundMessage, ctx: SendContext) -> tuple[Call, list[str]]:
        """The request, signed with the time now."""
        return build_call(message, self.config, self.now())
