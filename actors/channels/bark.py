"""The Bark channel: an iOS push through a Bark server (api.day.app or self-hosted).

Truncates (never splits) the body to 3000 UTF-8 bytes, inside APNs' 4 KB payload; `code` decides.
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
    render,
    truncate,
    truncation_note,
    utf8_len,
)

BODY_LIMIT_BYTES = 3000
HINTS = {400: "check device_key: the Bark app shows it in the server URL"}


class BarkConfig(ChannelConfig):
    device_key: str = Field(min_length=1, description="The device key the Bark app shows.")
    base_url: BaseUrl = Field(
        "https://api.day.app", description="The Bark server (self-hosted ones are common)."
    )
    group: str | None = Field(None, description="Group notifications under this name.")
    sound: str | None = Field(None, description="A Bark sound name, e.g. minuet.")


def level(priority: int) -> str:
    """Bark's interruption level for a message priority (1–5)."""
    if priority >= 5:
        return "timeSensitive"
    return "passive" if priority <= 1 else "active"


def build_call(message: OutboundMessage, config: BarkConfig) -> tuple[Call, list[str]]:
    full = render(message, markdown=False, title=False)
    body, cut = truncate(full, BODY_LIMIT_BYTES, utf8_len)
    notes = [truncation_note("body", utf8_len(full), BODY_LIMIT_BYTES, "bytes")] if cut else []
    payload = {
        "device_key": config.device_key,
        "title": message.title,
        "body": body,
        "level": level(message.priority),
    }
    optional = {"url": message.url, "group": config.group, "sound": config.sound}
    payload.update({k: v for k, v in optional.items() if v})
    return json_call(f"{config.base_url}/push", payload), notes


def classify_answer(answer: Answer, now: float) -> SendResult:
    """code 200 is sent; HTTP 5xx or code 500 (push service trouble) retry; others are permanent."""
    return classify_body_code(
        answer,
        now,
        "Bark",
        code_key="code",
        message_key="message",
        ok=200,
        retry_codes={500: None},
        hints=HINTS,
    )


@register
class BarkChannel(OneRequestChannel):
    type_name = "bark"
    Config = BarkConfig
    secret_fields = ("device_key",)
    config: BarkConfig

    build_call = staticmethod(build_call)
    classify_answer = staticmethod(classify_answer)
