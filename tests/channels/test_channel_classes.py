"""The channel classes name their pure functions: every HTTP type can build and classify.

No network: the classes are looked at, and the shared helpers run on hand-made answers.
"""

from __future__ import annotations

import json

import pytest

from messagepusher.accounts.access_tokens import credential_key
from messagepusher.actors.channels import build_channel
from messagepusher.actors.channels.app_token import TokenChannel, access_token_answer
from messagepusher.actors.channels.base import REGISTRY, OutboundMessage, SendResult
from messagepusher.actors.channels.http_common import (
    Answer,
    Call,
    HttpChannel,
    OneRequestChannel,
    as_calls,
    keep_remote_id,
)

HTTP_TYPES = sorted(name for name, cls in REGISTRY.items() if issubclass(cls, HttpChannel))


def answer(status: int, body: object) -> Answer:
    return Answer(status, json.dumps(body))


@pytest.mark.parametrize("type_name", HTTP_TYPES)
def test_every_http_channel_names_how_it_classifies_and_how_it_builds(type_name):
    cls = REGISTRY[type_name]
    assert callable(getattr(cls, "classify_answer", None)), type_name
    if issubclass(cls, TokenChannel):
        for name in ("token_call", "read_token", "build_call", "token_refused"):
            assert callable(getattr(cls, name, None)), (type_name, name)
        assert cls.credential_fields, type_name
    elif issubclass(cls, OneRequestChannel):
        overrides_build = cls.build is not OneRequestChannel.build
        assert overrides_build or callable(getattr(cls, "build_call", None)), type_name


def test_one_call_several_calls_and_notes_all_come_out_as_calls_and_notes():
    call = Call("POST", "https://example.com/")
    assert as_calls(call) == ([call], [])
    assert as_calls((call, ["cut"])) == ([call], ["cut"])
    assert as_calls(([call, call], [])) == ([call, call], [])


def test_a_remote_id_is_kept_only_for_a_sent_message_that_has_one():
    assert keep_remote_id(SendResult.sent(200), 7).remote_id == "7"
    assert keep_remote_id(SendResult.sent(200), None).remote_id is None
    assert keep_remote_id(SendResult.sent(200), "").remote_id is None
    assert keep_remote_id(SendResult.retry("busy", 503), "7").remote_id is None


def test_a_token_answer_that_reads_as_sent_without_a_token_is_permanent_and_names_base_url():
    def classify(a: Answer, now: float) -> SendResult:
        return SendResult.sent(a.status)

    got = access_token_answer(answer(200, {"errcode": 0}), 0.0, classify, "WeCom")
    assert isinstance(got, SendResult) and got.status == "permanent"
    assert "WeCom answered without an access_token" in got.detail and "base_url" in got.detail
    assert access_token_answer(
        answer(200, {"access_token": "t", "expires_in": 60}), 0.0, classify, "WeCom"
    ) == ("t", 60.0)


@pytest.mark.parametrize(
    ("type_name", "config", "parts"),
    [
        ("wecom_app", {"corp_id": "c", "agent_id": 1, "agent_secret": "s"}, ("c", "s")),
        ("feishu_app", {"app_id": "a", "app_secret": "s", "receive_id": "r"}, ("a", "s")),
        (
            "wechat_test",
            {"app_id": "a", "app_secret": "s", "template_id": "t", "open_id": "o"},
            ("a", "s"),
        ),
    ],
)
def test_an_app_channel_s_token_row_is_keyed_by_its_type_base_url_and_credential(
    type_name, config, parts
):
    channel = build_channel(type_name, config)
    assert channel.token_key() == credential_key(type_name, channel.config.base_url, *parts)


def test_an_app_channel_without_the_service_s_id_says_recall_is_not_supported(ctx):
    config = {"corp_id": "c", "agent_id": 1, "agent_secret": "s"}
    result = build_channel("wecom_app", config).recall(None, ctx)
    assert (result.status, result.detail) == (
        "not_supported",
        "WeCom gave no msgid for this delivery",
    )


def test_a_message_builds_into_requests_through_the_class_attributes():
    message = OutboundMessage(id=1, title="t", body="b")
    channel = build_channel("bark", {"device_key": "k"})
    calls, notes = channel.calls(message, None)
    assert len(calls) == 1 and calls[0].url == "https://api.day.app/push" and notes == []
