"""Webhook: the JSON document, the signature and delivery headers, templates, and status classes."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from fakes.channel_services import Reply, WebhookSink

from messagepusher.actors.channels import ChannelConfigError, build_channel

SECRET = "whsec-5f2b9c0e7d"


@pytest.fixture
def sink():
    with WebhookSink(SECRET) as sink:
        yield sink


def test_webhook_posts_the_message_document_with_signature_and_delivery_id(
    sink, ctx, make_message
) -> None:
    message = make_message(
        url="https://example.com/post",
        priority=4,
        fetched={"title": "原文", "text": "正" * 5000, "status": "ok"},
        ai={"task": "summarize", "result": "摘要文本", "provider": "local"},
    )
    channel = build_channel(
        "webhook", {"url": f"{sink.url}/hooks/in", "secret": SECRET, "headers": {"X-Env": "test"}}
    )
    result = channel.send(message, ctx)
    assert result.status == "sent", result.detail
    request = sink.requests[0]
    assert (request.method, request.path) == ("POST", "/hooks/in")
    assert request.headers["x-messagepusher-delivery"] == "42"
    assert request.headers["x-env"] == "test"
    assert request.headers["content-type"] == "application/json"
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-messagepusher-signature"] == expected
    document = request.json()
    assert document == {
        "id": 1001,
        "title": "磁盘告警 Disk alert",
        "body": message.body,
        "format": "text",
        "priority": 4,
        "url": "https://example.com/post",
        "fetched": {"title": "原文", "text": "正" * 2000},
        "ai": {"task": "summarize", "result": "摘要文本"},
        "created_at": "2026-01-02T03:04:05Z",
    }


def test_webhook_without_fetch_or_ai_sends_nulls_and_no_signature(ctx, make_message) -> None:
    with WebhookSink() as sink:
        result = build_channel("webhook", {"url": f"{sink.url}/h", "method": "PUT"}).send(
            make_message(), ctx
        )
    assert result.status == "sent"
    request = sink.requests[0]
    assert request.method == "PUT"
    assert "x-messagepusher-signature" not in request.headers
    assert (request.json()["fetched"], request.json()["ai"]) == (None, None)


def test_webhook_json_template_escapes_values_so_the_body_stays_valid_json(
    ctx, make_message
) -> None:
    template = '{"msg_type": "text", "content": {"text": "$title: $body ($summary) #$id p$priority $unknown"}}'
    message = make_message(
        title='引号 "quoted"', body="line1\nline2 \\ end", ai={"task": "summarize", "result": "短"}
    )
    with WebhookSink() as sink:
        config = {
            "url": f"{sink.url}/custom",
            "template": template,
            "content_type": "application/json; charset=utf-8",
        }
        result = build_channel("webhook", config).send(message, ctx)
    assert result.status == "sent"
    assert (
        json.loads(sink.requests[0].body)["content"]["text"]
        == '引号 "quoted": line1\nline2 \\ end (短) #1001 p3 $unknown'
    )


def test_webhook_text_template_is_filled_without_escaping(ctx, make_message) -> None:
    with WebhookSink() as sink:
        config = {
            "url": f"{sink.url}/t",
            "template": "$title\n$url",
            "content_type": "text/plain; charset=utf-8",
        }
        build_channel("webhook", config).send(
            make_message(title='a "b"', url="https://e.x/?q=1"), ctx
        )
    request = sink.requests[0]
    assert request.body.decode() == 'a "b"\nhttps://e.x/?q=1'
    assert request.headers["content-type"] == "text/plain; charset=utf-8"


def test_webhook_a_signature_the_receiver_rejects_is_a_permanent_failure(
    sink, ctx, make_message
) -> None:
    channel = build_channel("webhook", {"url": f"{sink.url}/h", "secret": "wrong-secret"})
    result = channel.send(make_message(), ctx)
    assert (result.status, result.response_code) == ("permanent", 401)


def test_webhook_redirect_is_not_followed_and_is_permanent(sink, ctx, make_message) -> None:
    sink.script(Reply(301, "", {"Location": "http://169.254.169.254/latest"}))
    result = build_channel("webhook", {"url": f"{sink.url}/h", "secret": SECRET}).send(
        make_message(), ctx
    )
    assert result.status == "permanent"
    assert "redirects are not followed" in result.detail
    assert len(sink.requests) == 1


def test_webhook_408_is_retried(sink, ctx, make_message) -> None:
    sink.script(Reply(408, "request timeout"))
    result = build_channel("webhook", {"url": f"{sink.url}/h", "secret": SECRET}).send(
        make_message(), ctx
    )
    assert result.status == "retry"


def test_webhook_url_must_be_http() -> None:
    with pytest.raises(ChannelConfigError) as raised:
        build_channel("webhook", {"url": "ftp://example.com/secret-path"})
    assert raised.value.field == "config.url"
    assert "secret-path" not in str(raised.value)
