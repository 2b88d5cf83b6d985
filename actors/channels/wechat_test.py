"""The 微信测试号 (WeChat official-account test account) channel: one template message per open_id.

The access token (grant_type=client_credential) is shared by every process; errcode decides each answer.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from pydantic import BeforeValidator, Field

from messagepusher.actors.channels.app_token import TokenChannel, access_token_answer
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
    body_text,
    classify_body_code,
    json_at,
    json_call,
    keep_remote_id,
    render,
)

TOKEN_REFUSED = frozenset({40001, 40014, 42001})  # invalid credential, invalid token, expired
QUOTA_SECONDS = 3600.0  # 45009: the daily quota is spent; try again in an hour
RETRY_CODES: dict[int, float | None] = {-1: None, 45009: QUOTA_SECONDS}
HINTS = {
    -1: "WeChat is busy",
    40001: "the credential is not valid: check app_secret",
    40003: "an open_id is not a follower of this test account: copy it from the account's user list",
    40013: "app_id is not valid: copy appID from the test account page",
    40037: "template_id is not valid: copy it from the test account's template list",
    40125: "app_secret is not valid: copy appsecret from the test account page",
    40164: "this server's IP is not in the account's IP allow-list",
    43004: "the recipient has not followed the test account",
    45009: "the daily API quota is spent",
    47003: "the template data is not valid",
}


def _open_ids(value: Any) -> Any:
    """One open_id, several separated by | or , (message-pusher's style), or a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.replace(",", "|").split("|") if part.strip()]
    return value


class WeChatTestConfig(ChannelConfig):
    app_id: str = Field(min_length=1, description="appID of the test account (测试号信息).")
    app_secret: str = Field(min_length=1, description="appsecret of the test account.")
    template_id: str = Field(
        min_length=1,
        description="The template's id; the template may use {{title.DATA}}, "
        "{{description.DATA}}, {{content.DATA}} and {{text.DATA}}.",
    )
    open_id: Annotated[list[str], BeforeValidator(_open_ids)] = Field(
        min_length=1,
        description="The followers to send to: one open_id, a list, or several separated by |.",
    )
    base_url: BaseUrl = Field(
        "https://api.weixin.qq.com", description="WeChat API root (or a relay)."
    )


def token_call(config: WeChatTestConfig) -> Call:
    query = urlencode(
        {"grant_type": "client_credential", "appid": config.app_id, "secret": config.app_secret}
    )
    return Call("GET", f"{config.base_url}/cgi-bin/token?{query}")


def read_token(answer: Answer, now: float) -> tuple[str, float] | SendResult:
    """{"access_token", "expires_in"} is a token; an errcode is classified like a send."""
    return access_token_answer(answer, now, classify_answer, "WeChat")


def build_calls(
    message: OutboundMessage, config: WeChatTestConfig, token: str
) -> tuple[list[Call], list[str]]:
    """One template message per recipient (the message's own recipients, else open_id)."""
    description = body_text(message).strip()
    data = {
        "title": {"value": message.title},
        "description": {"value": description},
        "content": {"value": render(message, markdown=False, title=False)},
        "text": {"value": description},
    }
    url = f"{config.base_url}/cgi-bin/message/template/send?{urlencode({'access_token': token})}"
    calls = []
    for open_id in message.recipients or config.open_id:
        payload: dict[str, Any] = {"touser": open_id, "template_id": config.template_id}
        if message.url:
            payload["url"] = message.url
        payload["data"] = data
        calls.append(json_call(url, payload))
    return calls, []


def token_refused(answer: Answer) -> bool:
    data = answer.json()
    return isinstance(data, dict) and data.get("errcode") in TOKEN_REFUSED


def classify_answer(answer: Answer, now: float) -> SendResult:
    """errcode 0 is sent (msgid kept); -1 (busy) and 45009 (quota) retry; any other is permanent."""
    result = classify_body_code(
        answer,
        now,
        "WeChat",
        code_key="errcode",
        message_key="errmsg",
        ok=0,
        retry_codes=RETRY_CODES,
        hints=HINTS,
    )
    return keep_remote_id(result, json_at(answer.json(), "msgid"))


@register
class WeChatTestChannel(TokenChannel):
    type_name = "wechat_test"
    Config = WeChatTestConfig
    secret_fields = ("app_secret",)
    addresses_recipients = True
    config: WeChatTestConfig

    credential_fields = ("app_id", "app_secret")
    token_call = staticmethod(token_call)
    read_token = staticmethod(read_token)
    build_call = staticmethod(build_calls)
    token_refused = staticmethod(token_refused)
    classify_answer = staticmethod(classify_answer)
