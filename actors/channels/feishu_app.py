"""The 飞书/Lark 自建应用 (custom app) channel: a text or interactive-card message from the app's bot.

The tenant access token is shared by every process; the body's `code` decides, on 4xx answers too.
Recall deletes the kept message_id; edit replaces a text (PUT) or a card (PATCH, cards are sent shared).
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from typing import Literal
from urllib.parse import quote, urlencode

from pydantic import Field

from messagepusher.actors.channels.app_token import TokenChannel, token_or_reason
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
    classify_body_code,
    json_at,
    json_call,
    message_title,
    parse_retry_after,
    render,
    truncate,
    truncation_note,
    utf8_len,
)

TEXT_LIMIT_BYTES = 150 * 1024  # the documented request-body limit of a text message
CARD_LIMIT_BYTES = 28 * 1024  # a card's limit is 30 KB including its JSON frame
TOKEN_REFUSED = frozenset({99991661, 99991663})  # token missing, token invalid or expired
RATE_LIMIT_SECONDS = 1.0  # 99991400 and 230020 are per-second limits
RETRY_CODES: dict[int, float | None] = {99991400: RATE_LIMIT_SECONDS, 230020: RATE_LIMIT_SECONDS}
HINTS = {
    10003: "app_id is not valid: copy App ID from the app's Credentials page",
    10014: "app_secret is not valid: copy App Secret from the app's Credentials page",
    99991400: "the request rate limit is reached",
    99991672: "the app lacks a permission: grant im:message (or im:message:send_as_bot)",
    230001: "a parameter is not valid: check receive_id_type and receive_id",
    230002: "the bot is not in this chat: add the app's bot to the group",
    230006: "the app has no bot: enable the bot ability and publish a version",
    230013: "the recipient is outside the app's availability range",
    230020: "the rate limit for this chat is reached",
    230025: "the message is too long",
}

CHANGE_HINTS = {  # the codes of recall (DELETE) and edit (PUT, PATCH)
    230009: "Feishu recalls only messages younger than the tenant's recall limit (default 24 h)",
    230011: "the message was already recalled",
    230026: "the bot may recall only its own messages",
    230027: "the app lacks a permission: grant im:message (or im:message:recall / :update)",
    230031: "Feishu edits only messages younger than 14 days",
    230054: "Feishu cannot do this for this message type",
    230099: "the card could not be built; a card sent without update_multi cannot be updated",
}


class FeishuAppConfig(ChannelConfig):
    app_id: str = Field(min_length=1, description="App ID (cli_…) from the app's Credentials page.")
    app_secret: str = Field(min_length=1, description="App Secret from the same page.")
    receive_id_type: Literal["open_id", "user_id", "union_id", "email", "chat_id"] = Field(
        "open_id", description="What receive_id is: open_id, user_id, union_id, email or chat_id."
    )
    receive_id: str = Field(min_length=1, description="The user or chat to send to.")
    base_url: BaseUrl = Field(
        "https://open.feishu.cn",
        description="Feishu API root; https://open.larksuite.com for Lark (or a relay).",
    )


def token_call(config: FeishuAppConfig) -> Call:
    return json_call(
        f"{config.base_url}/open-apis/auth/v3/tenant_access_token/internal",
        {"app_id": config.app_id, "app_secret": config.app_secret},
    )


def read_token(answer: Answer, now: float) -> tuple[str, float] | SendResult:
    """code 0 with tenant_access_token is a token; any other code is classified like a send."""
    data = answer.json()
    return token_or_reason(
        answer,
        now,
        json_at(data, "code") == 0 and json_at(data, "tenant_access_token"),
        json_at(data, "expire"),
        classify_answer,
        "Feishu answered without a tenant_access_token",
    )


def content_of(message: OutboundMessage) -> tuple[str, str, list[str]]:
    """(msg_type, content JSON, notes): markdown as an interactive card (title in its header),
    the rest as text.

    The card is a shared card (update_multi), the only kind Feishu lets the app update later.
    """
    markdown = message.format == "markdown"
    limit = CARD_LIMIT_BYTES if markdown else TEXT_LIMIT_BYTES
    full = render(message, markdown=markdown, title=not markdown)
    content, cut = truncate(full, limit, utf8_len)
    notes = [truncation_note("content", utf8_len(full), limit, "bytes")] if cut else []
    if markdown:
        card = {
            "config": {"wide_screen_mode": True, "update_multi": True},
            "header": {"title": {"tag": "plain_text", "content": message_title(message)}},
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": content}}],
        }
        msg_type, body = "interactive", card
    else:
        msg_type, body = "text", {"text": content}
    return msg_type, json.dumps(body, ensure_ascii=False), notes


def build_call(
    message: OutboundMessage, config: FeishuAppConfig, token: str
) -> tuple[Call, list[str]]:
    """The send request (content_of's message) and its truncation notes."""
    msg_type, content, notes = content_of(message)
    payload = {"receive_id": config.receive_id, "msg_type": msg_type, "content": content}
    url = (
        f"{config.base_url}/open-apis/im/v1/messages?"
        f"{urlencode({'receive_id_type': config.receive_id_type})}"
    )
    return json_call(url, payload, {"Authorization": f"Bearer {token}"}), notes


def message_url(config: FeishuAppConfig, message_id: str) -> str:
    return f"{config.base_url}/open-apis/im/v1/messages/{quote(message_id, safe='')}"


def delete_call(config: FeishuAppConfig, message_id: str, token: str) -> Call:
    return Call("DELETE", message_url(config, message_id), None, bearer(token))


def edit_call(
    config: FeishuAppConfig, message_id: str, message: OutboundMessage, token: str
) -> Call:
    """A text is replaced with PUT (msg_type and content); a card with PATCH (content only)."""
    msg_type, content, _ = content_of(message)
    call = json_call(
        message_url(config, message_id),
        {"msg_type": msg_type, "content": content} if msg_type == "text" else {"content": content},
        bearer(token),
    )
    return replace(call, method="PUT" if msg_type == "text" else "PATCH")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def change_answer(answer: Answer | SendResult, done: str) -> ChangeResult:
    """code 0 is `done`; any other code failed with Feishu's words and, where known, a hint."""
    if isinstance(answer, SendResult):
        return ChangeResult("failed", answer.detail)
    data = answer.json()
    if isinstance(data, dict) and data.get("code") == 0:
        return ChangeResult(done)  # type: ignore[arg-type]  # recalled or edited
    if not (isinstance(data, dict) and isinstance(data.get("code"), int)):
        return ChangeResult("failed", f"Feishu answered HTTP {answer.status}: {answer.short}")
    code = data["code"]
    detail = f"Feishu error code={code} (HTTP {answer.status}): {data.get('msg', '')}"
    hint = CHANGE_HINTS.get(code) or HINTS.get(code)
    return ChangeResult("failed", f"{detail} ({hint})" if hint else detail)


def token_refused(answer: Answer) -> bool:
    data = answer.json()
    return isinstance(data, dict) and data.get("code") in TOKEN_REFUSED


def classify_answer(answer: Answer, now: float) -> SendResult:
    """code 0 is sent (message_id kept); 99991400 and 230020 (rate limits), HTTP 429 and 5xx
    retry; any other code is permanent. Feishu answers most errors with HTTP 400 and a code."""
    data = answer.json()
    if not (isinstance(data, dict) and isinstance(data.get("code"), int)):
        return classify_body_code(answer, now, "Feishu", code_key="code", message_key="msg", ok=0)
    code = data["code"]
    if code == 0:
        result = SendResult.sent(answer.status, answer.excerpt)
        message_id = (data.get("data") or {}).get("message_id")
        result.remote_id = str(message_id) if message_id else None
        return result
    detail = f"Feishu error code={code} (HTTP {answer.status}): {data.get('msg', '')}"
    if code in HINTS:
        detail += f" ({HINTS[code]})"
    if code in RETRY_CODES or answer.status == 429 or answer.status >= 500:
        wait = parse_retry_after(answer.header("Retry-After"), now)
        return SendResult.retry(
            detail,
            answer.status,
            answer.excerpt,
            wait if wait is not None else RETRY_CODES.get(code),
        )
    return SendResult.permanent(detail, answer.status, answer.excerpt)


@register
class FeishuAppChannel(TokenChannel):
    type_name = "feishu_app"
    rate_per_minute = 300  # 5 a second to one user or chat
    Config = FeishuAppConfig
    secret_fields = ("app_secret",)
    config: FeishuAppConfig

    credential_fields = ("app_id", "app_secret")
    missing_remote_id = "Feishu gave no message_id for this delivery"
    token_call = staticmethod(token_call)
    read_token = staticmethod(read_token)
    build_call = staticmethod(build_call)
    token_refused = staticmethod(token_refused)
    classify_answer = staticmethod(classify_answer)

    def recall(self, remote_id: str | None, ctx: SendContext) -> ChangeResult:
        """DELETE the kept message_id with the shared token (refreshed once if refused).

        Runs in an HTTP worker thread; never raises.
        """
        return self.change_with_token(
            remote_id,
            ctx,
            partial(delete_call, self.config),
            partial(change_answer, done="recalled"),
        )

    def edit(
        self, remote_id: str | None, message: OutboundMessage, ctx: SendContext
    ) -> ChangeResult:
        """PUT a text, PATCH a card, with the new text (HTTP worker thread); never raises."""
        return self.change_with_token(
            remote_id,
            ctx,
            lambda message_id, token: edit_call(self.config, message_id, message, token),
            partial(change_answer, done="edited"),
        )
