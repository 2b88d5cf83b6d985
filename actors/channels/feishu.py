"""The Feishu (飞书) and Lark custom-robot channels: signed text or card messages.

Truncates (never splits) content to 18000 UTF-8 bytes (the request limit is 20 KB); `code` decides.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import partial

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

CONTENT_LIMIT_BYTES = 18000
RATE_LIMIT_SECONDS = 60.0
RETRY_CODES: dict[int, float | None] = {9499: RATE_LIMIT_SECONDS, 11232: RATE_LIMIT_SECONDS}
HINTS = {
    9499: "too many requests",
    11232: "frequency limited",
    19001: "the webhook token is not valid: copy the part after /hook/ of the robot's URL",
    19021: "signature mismatch: check secret and this server's clock",
    19022: "this server's IP is not in the robot's allow-list",
    19024: "the robot's security settings (keywords or IP allow-list) refused it",
}


class FeishuConfig(ChannelConfig):
    token: str = Field(
        min_length=1, description="The part after /open-apis/bot/v2/hook/ of the robot's URL."
    )
    secret: str | None = Field(
        None, description="The signature-verification secret, when the robot has one."
    )
    base_url: BaseUrl = Field("https://open.feishu.cn", description="Feishu API root (or a relay).")


class LarkConfig(FeishuConfig):
    base_url: BaseUrl = Field(
        "https://open.larksuite.com", description="Lark API root (or a relay)."
    )


def sign(secret: str, timestamp_s: str) -> str:
    """Feishu's published signature: the key is "timestamp\\nsecret", the message empty."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def build_call(
    message: OutboundMessage, config: FeishuConfig, now: float
) -> tuple[Call, list[str]]:
    """The robot request: markdown messages as an interactive card, the rest as text."""
    markdown = message.format == "markdown"
    full = render(message, markdown=markdown, title=not markdown)
    content, cut = truncate(full, CONTENT_LIMIT_BYTES, utf8_len)
    notes = (
        [truncation_note("content", utf8_len(full), CONTENT_LIMIT_BYTES, "bytes")] if cut else []
    )
    if markdown:
        card = {
            "header": {"title": {"tag": "plain_text", "content": message_title(message)}},
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": content}}],
        }
        payload: dict = {"msg_type": "interactive", "card": card}
    else:
        payload = {"msg_type": "text", "content": {"text": content}}
    if config.secret:
        timestamp = str(int(now))
        payload = {"timestamp": timestamp, "sign": sign(config.secret, timestamp), **payload}
    return json_call(f"{config.base_url}/open-apis/bot/v2/hook/{config.token}", payload), notes


def classify_answer(answer: Answer, now: float, service: str = "Feishu") -> SendResult:
    """code 0 is sent; 9499 and 11232 (rate limits) retry; any other code is permanent.

    Older robots answer {"StatusCode": 0, "StatusMessage": "success"}: read either shape.
    """
    data = answer.json()
    legacy = isinstance(data, dict) and "code" not in data and "StatusCode" in data
    return classify_body_code(
        answer,
        now,
        service,
        code_key="StatusCode" if legacy else "code",
        message_key="StatusMessage" if legacy else "msg",
        ok=0,
        retry_codes=RETRY_CODES,
        hints=HINTS,
    )


@register
class FeishuChannel(OneRequestChannel):
    type_name = "feishu"
    rate_per_minute = 100  # 100 a minute (5 a second) per robot
    Config: type[ChannelConfig] = FeishuConfig
    secret_fields = ("token", "secret")
    config: FeishuConfig
    classify_answer = staticmethod(classify_answer)

    def build(self, message: OutboundMessage, ctx: SendContext) -> tuple[Call, list[str]]:
        """The request, signed with the time now."""
        return build_call(message, self.config, self.now())


@register
class LarkChannel(FeishuChannel):
    type_name = "lark"
    Config = LarkConfig
    classify_answer = staticmethod(partial(classify_answer, service="Lark"))
