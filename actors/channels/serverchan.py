"""The ServerChan (Server酱) channel: a WeChat push through sctapi.ftqq.com (or ServerChan³).

Truncates (never splits): title to 32 characters, desp to 32 KB of UTF-8; `code` decides.
"""

from __future__ import annotations

import re

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
    form_call,
    message_title,
    render,
    truncate,
    truncation_note,
    utf8_len,
)

DEFAULT_BASE_URL = "https://sctapi.ftqq.com"
TITLE_LIMIT_CHARS = 32
DESP_LIMIT_BYTES = 32 * 1024
SC3_SENDKEY = re.compile(r"^sctp(\d+)t")  # ServerChan³ keys name their own host
HINTS = {40001: "check sendkey"}


class ServerChanConfig(ChannelConfig):
    sendkey: str = Field(
        min_length=1, description="The SendKey from sct.ftqq.com (or a ServerChan³ sctp… key)."
    )
    base_url: BaseUrl = Field(DEFAULT_BASE_URL, description="ServerChan API root (or a relay).")


def endpoint(config: ServerChanConfig) -> str:
    """The send URL; a ServerChan³ key on the default base_url goes to its own host."""
    sc3 = SC3_SENDKEY.match(config.sendkey)
    if sc3 and config.base_url == DEFAULT_BASE_URL:
        return f"https://{sc3[1]}.push.ft07.com/send/{config.sendkey}.send"
    return f"{config.base_url}/{config.sendkey}.send"


def build_call(message: OutboundMessage, config: ServerChanConfig) -> tuple[Call, list[str]]:
    notes = []
    title, title_cut = truncate(message_title(message), TITLE_LIMIT_CHARS)
    if title_cut:
        notes.append(
            truncation_note("title", len(message_title(message)), TITLE_LIMIT_CHARS, "characters")
        )
    full = render(message, markdown=True, title=False)
    desp, cut = truncate(full, DESP_LIMIT_BYTES, utf8_len)
    if cut:
        notes.append(truncation_note("desp", utf8_len(full), DESP_LIMIT_BYTES, "bytes"))
    return form_call(endpoint(config), {"title": title, "desp": desp}), notes


def classify_answer(answer: Answer, now: float) -> SendResult:
    """code 0 is sent; any other code is permanent (a bad key or the daily quota)."""
    return classify_body_code(
        answer, now, "ServerChan", code_key="code", message_key="message", ok=0, hints=HINTS
    )


@register
class ServerChanChannel(OneRequestChannel):
    type_name = "serverchan"
    Config = ServerChanConfig
    secret_fields = ("sendkey",)
    config: ServerChanConfig

    def targets(self) -> list[str]:
        return [endpoint(self.config)]

    build_call = staticmethod(build_call)
    classify_answer = staticmethod(classify_answer)
