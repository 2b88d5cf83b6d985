"""The Telegram bot channel: sendMessage to a chat, split into several messages when long.

Splits (never truncates) at 4096 UTF-16 units; `ok` decides, 429 waits `parameters.retry_after`.
Recall is deleteMessage of every part, edit is editMessageText of a one-part message.
"""

from __future__ import annotations

import html

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
    BaseUrl,
    Call,
    HttpChannel,
    classify_status,
    json_call,
    parse_retry_after,
    render,
    retry_after_from_json,
    split,
    utf16_len,
)

PART_LIMIT = 4096
HINTS = {
    401: "bot_token was rejected: copy it from @BotFather",
    403: "the bot was blocked by the user or removed from the chat",
    400: "check chat_id and that the bot is a member of the chat",
}


class TelegramConfig(ChannelConfig):
    bot_token: str = Field(min_length=1, description="The bot token from @BotFather (123456:ABC…).")
    chat_id: int | str = Field(
        description="The chat: a numeric id (groups are negative) or @channelname."
    )
    base_url: BaseUrl = Field(
        "https://api.telegram.org", description="Bot API root (or a local Bot API server)."
    )
    message_thread_id: int | None = Field(None, description="A forum topic to post in.")


def parts_of(message: OutboundMessage) -> list[str]:
    """The message as Telegram HTML, one string per sendMessage, each at most 4096 after parsing.

    The plain text is split first and escaped after, so no tag or entity is ever cut.
    """
    pieces = split(render(message, markdown=False), PART_LIMIT, utf16_len)
    escaped = [html.escape(piece, quote=False) for piece in pieces]
    title = html.escape(message.title.strip(), quote=False)
    if title and escaped[0].startswith(title):
        escaped[0] = f"<b>{title}</b>{escaped[0][len(title) :]}"
    return escaped


def build_call(config: TelegramConfig, text: str, priority: int) -> Call:
    payload: dict = {"chat_id": config.chat_id, "text": text, "parse_mode": "HTML"}
    if priority <= 1:
        payload["disable_notification"] = True
    if config.message_thread_id is not None:
        payload["message_thread_id"] = config.message_thread_id
    return json_call(f"{config.base_url}/bot{config.bot_token}/sendMessage", payload)


def classify_answer(answer: Answer, now: float) -> SendResult:
    """ok true is sent; 429 retries after parameters.retry_after; 5xx retries; other errors are permanent."""
    data = answer.json()
    if not isinstance(data, dict) or "ok" not in data:
        if 200 <= answer.status < 300:
            return SendResult.permanent(
                f"Telegram answered HTTP {answer.status} without 'ok'; check base_url",
                answer.status,
                answer.excerpt,
            )
        return classify_status(answer, now, "Telegram")
    if data["ok"] is True:
        sent = data.get("result") if isinstance(data.get("result"), dict) else {}
        message_id = sent.get("message_id")
        return SendResult.sent(
            answer.status,
            answer.excerpt,
            remote_id=str(message_id) if message_id is not None else None,
        )
    code = data.get("error_code", answer.status)
    detail = f"Telegram error {code}: {data.get('description', '')}"
    parameters = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    if code == 429:
        delay = retry_after_from_json(data, "parameters", "retry_after")
        if delay is None:
            delay = parse_retry_after(answer.header("Retry-After"), now)
        return SendResult.retry(detail, answer.status, answer.excerpt, delay)
    if code >= 500:
        return SendResult.retry(detail, answer.status, answer.excerpt)
    if parameters.get("migrate_to_chat_id"):
        detail += (
            f" (the group became a supergroup: set chat_id to {parameters['migrate_to_chat_id']})"
        )
    elif code in HINTS:
        detail += f" ({HINTS[code]})"
    return SendResult.permanent(detail, answer.status, answer.excerpt)


def delete_call(config: TelegramConfig, message_id: str) -> Call:
    return json_call(
        f"{config.base_url}/bot{config.bot_token}/deleteMessage",
        {"chat_id": config.chat_id, "message_id": int(message_id)},
    )


def edit_call(config: TelegramConfig, message_id: str, text: str) -> Call:
    return json_call(
        f"{config.base_url}/bot{config.bot_token}/editMessageText",
        {
            "chat_id": config.chat_id,
            "message_id": int(message_id),
            "text": text,
            "parse_mode": "HTML",
        },
    )


def change_answer(answer: Answer | SendResult, done: str) -> ChangeResult:
    """`ok` true is `done`; otherwise failed with Telegram's description."""
    if isinstance(answer, SendResult):
        return ChangeResult("failed", answer.detail)
    data = answer.json()
    if isinstance(data, dict) and data.get("ok") is True:
        return ChangeResult(done)  # type: ignore[arg-type]  # recalled or edited
    description = data.get("description", answer.short) if isinstance(data, dict) else answer.short
    return ChangeResult("failed", f"Telegram answered HTTP {answer.status}: {description}")


@register
class TelegramChannel(HttpChannel):
    type_name = "telegram"
    rate_per_minute = 20  # 20 a minute into one group
    Config = TelegramConfig
    secret_fields = ("bot_token",)
    config: TelegramConfig

    classify_answer = staticmethod(classify_answer)

    def calls(self, message: OutboundMessage, ctx: SendContext) -> tuple[list[Call], list[str]]:
        """One sendMessage per 4096-character part, in order."""
        parts = parts_of(message)
        notes = (
            [f"split into {len(parts)} messages of at most {PART_LIMIT} characters"]
            if len(parts) > 1
            else []
        )
        return [build_call(self.config, text, message.priority) for text in parts], notes

    def recall(self, remote_id: str | None, ctx: SendContext) -> ChangeResult:
        """deleteMessage for each part, in order; the first failure is the answer.

        Telegram lets a bot delete its messages for 48 hours; after that it answers 400.
        """
        if not remote_id:
            return ChangeResult("not_supported", "Telegram gave no message_id for this delivery")
        for message_id in remote_id.split(","):
            result = change_answer(
                self.exchange(ctx, delete_call(self.config, message_id)), "recalled"
            )
            if result.status != "recalled":
                return result
        return ChangeResult("recalled")

    def edit(
        self, remote_id: str | None, message: OutboundMessage, ctx: SendContext
    ) -> ChangeResult:
        """editMessageText of the first part; a text that needs more parts cannot be edited in."""
        if not remote_id:
            return ChangeResult("not_supported", "Telegram gave no message_id for this delivery")
        ids = remote_id.split(",")
        parts = parts_of(message)
        if len(parts) > 1 or len(ids) > 1:
            return ChangeResult(
                "not_supported",
                f"Telegram edits one message at a time; this one is {max(len(parts), len(ids))} "
                f"messages of at most {PART_LIMIT} characters",
            )
        return change_answer(self.exchange(ctx, edit_call(self.config, ids[0], parts[0])), "edited")
