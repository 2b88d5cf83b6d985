"""The 企业微信应用消息 (WeCom app message) channel: text, markdown or a text card to users, parties, tags.

The app's access token (gettoken) is shared by every process; errcode decides; truncates, never splits.
Recall is message/recall of the msgid kept at send; WeCom has no way to edit a sent app message.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import urlencode

from pydantic import Field

from messagepusher.actors.channels.app_token import TokenChannel, access_token_answer
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
    body_text,
    classify_body_code,
    json_call,
    message_title,
    render,
    truncate,
    truncation_note,
    utf8_len,
)

TEXT_LIMIT_BYTES = 2048
MARKDOWN_LIMIT_BYTES = 2048
CARD_TITLE_LIMIT_BYTES = 128
CARD_DESCRIPTION_LIMIT_BYTES = 512
TOKEN_REFUSED = frozenset({40014, 42001})  # invalid access_token, access_token expired
RETRY_CODES: dict[int, float | None] = {-1: None, 45009: 60.0, 45033: 10.0}
HINTS = {
    -1: "WeCom is busy",
    40001: "agent_secret is not valid: copy the app's Secret",
    40013: "corp_id is not valid: copy 企业ID from My Company",
    40056: "agent_id is not valid: copy AgentId from the app's page",
    40091: "agent_secret is not valid: copy the app's Secret",
    45009: "the API rate limit is reached",
    45033: "too many concurrent calls",
    60020: "this server's IP is not in the app's trusted IPs (企业可信IP)",
    81013: "no recipient is valid: check to_user, to_party and to_tag",
    82001: "no recipient is within the app's visible range",
}
SKIPPED = {  # fields of a successful answer naming recipients WeCom did not reach
    "invaliduser": "users",
    "invalidparty": "parties",
    "invalidtag": "tags",
    "unlicenseduser": "unlicensed users",
}


class WeComAppConfig(ChannelConfig):
    corp_id: str = Field(min_length=1, description="企业ID (My Company → Company ID).")
    agent_id: int = Field(description="The app's AgentId.")
    agent_secret: str = Field(min_length=1, description="The app's Secret.")
    to_user: str = Field(
        "@all", description='Member UserIDs separated by |, or "@all" for everyone.'
    )
    to_party: str = Field("", description="Department ids separated by |.")
    to_tag: str = Field("", description="Tag ids separated by |.")
    base_url: BaseUrl = Field(
        "https://qyapi.weixin.qq.com", description="WeCom API root (or a relay)."
    )


def token_call(config: WeComAppConfig) -> Call:
    query = urlencode({"corpid": config.corp_id, "corpsecret": config.agent_secret})
    return Call("GET", f"{config.base_url}/cgi-bin/gettoken?{query}")


def read_token(answer: Answer, now: float) -> tuple[str, float] | SendResult:
    """errcode 0 with access_token is a token; any other errcode is classified like a send."""
    return access_token_answer(answer, now, classify_answer, "WeCom")


def _cut(text: str, limit: int, what: str, notes: list[str]) -> str:
    cut, was_cut = truncate(text, limit, utf8_len)
    if was_cut:
        notes.append(truncation_note(what, utf8_len(text), limit, "bytes"))
    return cut


def build_call(
    message: OutboundMessage, config: WeComAppConfig, token: str
) -> tuple[Call, list[str]]:
    """Markdown as msgtype markdown; a titled message with a link as a textcard; the rest as text.

    The message's own recipients (compat `to`) replace to_user, to_party and to_tag.
    """
    notes: list[str] = []
    payload: dict[str, Any] = {"agentid": config.agent_id}
    if message.recipients:
        payload["touser"] = "|".join(message.recipients)
    else:
        payload.update(touser=config.to_user, toparty=config.to_party, totag=config.to_tag)
    if message.format == "markdown":
        content = _cut(render(message, markdown=True), MARKDOWN_LIMIT_BYTES, "content", notes)
        payload.update(msgtype="markdown", markdown={"content": content})
    elif message.title.strip() and message.url:
        card = {
            "title": _cut(message_title(message), CARD_TITLE_LIMIT_BYTES, "title", notes),
            "description": _cut(
                body_text(message).strip(), CARD_DESCRIPTION_LIMIT_BYTES, "description", notes
            ),
            "url": message.url,
        }
        payload.update(msgtype="textcard", textcard=card)
    else:
        content = _cut(render(message, markdown=False), TEXT_LIMIT_BYTES, "content", notes)
        payload.update(msgtype="text", text={"content": content})
    url = f"{config.base_url}/cgi-bin/message/send?{urlencode({'access_token': token})}"
    return json_call(url, payload), notes


def token_refused(answer: Answer) -> bool:
    data = answer.json()
    return isinstance(data, dict) and data.get("errcode") in TOKEN_REFUSED


def classify_answer(answer: Answer, now: float) -> SendResult:
    """errcode 0 is sent (msgid kept, invalid recipients noted); -1, 45009 and 45033 retry;
    any other errcode is permanent."""
    result = classify_body_code(
        answer,
        now,
        "WeCom",
        code_key="errcode",
        message_key="errmsg",
        ok=0,
        retry_codes=RETRY_CODES,
        hints=HINTS,
    )
    data = answer.json()
    if result.status != "sent" or not isinstance(data, dict):
        return result
    if data.get("msgid"):
        result.remote_id = str(data["msgid"])
    for key, what in SKIPPED.items():
        if data.get(key):
            result.notes.append(f"WeCom skipped these {what}: {data[key]}")
    return result


def recall_call(config: WeComAppConfig, msgid: str, token: str) -> Call:
    url = f"{config.base_url}/cgi-bin/message/recall?{urlencode({'access_token': token})}"
    return json_call(url, {"msgid": msgid})


def recall_answer(answer: Answer | SendResult) -> ChangeResult:
    """errcode 0 is recalled; any other errcode (or no answer) failed with WeCom's words.

    WeCom takes back only app messages less than 24 hours old; older ones answer an errcode.
    """
    if isinstance(answer, SendResult):
        return ChangeResult("failed", answer.detail)
    data = answer.json()
    if answer.status == 200 and isinstance(data, dict) and data.get("errcode") == 0:
        return ChangeResult("recalled")
    if isinstance(data, dict) and "errcode" in data:
        detail = f"WeCom errcode {data['errcode']}: {data.get('errmsg', '')}"
        hint = HINTS.get(data["errcode"]) if isinstance(data["errcode"], int) else None
        return ChangeResult("failed", f"{detail} ({hint})" if hint else detail)
    return ChangeResult("failed", f"WeCom answered HTTP {answer.status}: {answer.short}")


@register
class WeComAppChannel(TokenChannel):
    type_name = "wecom_app"
    Config = WeComAppConfig
    secret_fields = ("agent_secret",)
    addresses_recipients = True
    config: WeComAppConfig

    credential_fields = ("corp_id", "agent_secret")
    missing_remote_id = "WeCom gave no msgid for this delivery"
    token_call = staticmethod(token_call)
    read_token = staticmethod(read_token)
    build_call = staticmethod(build_call)
    token_refused = staticmethod(token_refused)
    classify_answer = staticmethod(classify_answer)

    def recall(self, remote_id: str | None, ctx: SendContext) -> ChangeResult:
        """message/recall of the kept msgid with the shared token (refreshed once if refused).

        Runs in an HTTP worker thread; never raises.
        """
        return self.change_with_token(
            remote_id, ctx, partial(recall_call, self.config), recall_answer
        )

    def edit(
        self, remote_id: str | None, message: OutboundMessage, ctx: SendContext
    ) -> ChangeResult:
        """Never calls out: WeCom's API edits only template cards, which this channel does not send."""
        return ChangeResult(
            "not_supported",
            "WeCom cannot change a sent app message (only template cards, not sent by this channel)",
        )
