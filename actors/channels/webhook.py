"""The generic webhook channel: the message as signed JSON (or a custom template) to any URL.

Sends whole; 2xx is sent; receivers verify X-MessagePusher-Signature, de-duplicate by -Delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import string
from typing import Literal

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
    Call,
    HttpUrl,
    OneRequestChannel,
    ai_result_text,
    classify_status,
    fetched_excerpt,
)

SIGNATURE_HEADER = "X-MessagePusher-Signature"
DELIVERY_HEADER = "X-MessagePusher-Delivery"


class WebhookConfig(ChannelConfig):
    url: HttpUrl = Field(description="Where to send: an http:// or https:// URL.")
    method: Literal["POST", "PUT"] = Field("POST", description="POST or PUT.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    secret: str | None = Field(
        None, description=f"Sign the body: {SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256>."
    )
    template: str | None = Field(
        None,
        description="A custom body instead of the JSON document; placeholders $title $body $url "
        "$summary $id $priority $format $created_at (JSON-escaped when content_type is JSON).",
    )
    content_type: str = Field(
        "application/json", min_length=1, description="The body's Content-Type."
    )


def document(message: OutboundMessage) -> dict:
    """The JSON document a webhook receives when there is no template."""
    return {
        "id": message.id,
        "title": message.title,
        "body": message.body,
        "format": message.format,
        "priority": message.priority,
        "url": message.url,
        "fetched": fetched_excerpt(message.fetched),
        "ai": {"task": message.ai.get("task"), "result": message.ai.get("result")}
        if message.ai
        else None,
        "created_at": message.created_at,
    }


def fill_template(template: str, message: OutboundMessage, json_escape: bool) -> str:
    """`template` with its placeholders replaced; unknown placeholders are left as they are."""
    values = {
        "title": message.title,
        "body": message.body,
        "url": message.url or "",
        "summary": ai_result_text(message.ai),
        "id": str(message.id),
        "priority": str(message.priority),
        "format": message.format,
        "created_at": message.created_at,
    }
    if json_escape:
        values = {k: json.dumps(v, ensure_ascii=False)[1:-1] for k, v in values.items()}
    return string.Template(template).safe_substitute(values)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def build_call(message: OutboundMessage, config: WebhookConfig, delivery_id: int) -> Call:
    if config.template is None:
        body = json.dumps(document(message), ensure_ascii=False, separators=(",", ":")).encode()
    else:
        body = fill_template(
            config.template, message, "json" in config.content_type.lower()
        ).encode()
    headers = {
        **config.headers,
        "Content-Type": config.content_type,
        DELIVERY_HEADER: str(delivery_id),
    }
    if config.secret:
        headers[SIGNATURE_HEADER] = signature(config.secret, body)
    return Call(config.method, config.url, body, headers)


def classify_answer(answer: Answer, now: float) -> SendResult:
    """2xx is sent; 408, 429 and 5xx retry (Retry-After honoured); redirects and other 4xx are permanent."""
    return classify_status(answer, now, "The webhook")


@register
class WebhookChannel(OneRequestChannel):
    type_name = "webhook"
    Config = WebhookConfig
    secret_fields = ("url", "secret", "headers")
    config: WebhookConfig

    classify_answer = staticmethod(classify_answer)

    def build(self, message: OutboundMessage, ctx: SendContext) -> Call:
        """The request, carrying the delivery id receivers de-duplicate by."""
        return build_call(message, self.config, ctx.delivery_id)
