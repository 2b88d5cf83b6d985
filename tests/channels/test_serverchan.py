"""ServerChan: the form request, the ServerChan³ host, and code classes."""

from __future__ import annotations

import pytest
from fakes.channel_services import Reply, ServerChanFake

from messagepusher.actors.channels import build_channel
from messagepusher.actors.channels.serverchan import endpoint

SENDKEY = "SCT123456TaBcDeFgHiJkLmN"


@pytest.fixture
def fake():
    with ServerChanFake(SENDKEY) as fake:
        yield fake


def channel(fake):
    return build_channel("serverchan", {"sendkey": SENDKEY, "base_url": fake.url})


def test_serverchan_posts_a_form_with_title_and_markdown_desp(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(url="https://example.com/r"), ctx)
    assert result.status == "sent"
    request = fake.requests[0]
    assert request.path == f"/{SENDKEY}.send"
    form = request.form()
    assert form["title"] == "磁盘告警 Disk alert"
    assert form["desp"].startswith("服务器 db-1")
    assert form["desp"].endswith("[https://example.com/r](https://example.com/r)")


def test_serverchan_title_is_truncated_to_32_characters(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(title="很长的标题" * 10), ctx)
    assert result.status == "sent", result.detail
    assert len(fake.requests[0].form()["title"]) == 32
    assert any("title truncated" in note for note in result.notes)


def test_serverchan_bad_sendkey_code_is_a_permanent_failure(ctx, make_message) -> None:
    with ServerChanFake("SCTother") as fake:
        result = channel(fake).send(make_message(), ctx)
    assert result.status == "permanent"
    assert "code=40001" in result.detail


def test_serverchan_any_nonzero_code_is_permanent(fake, ctx, make_message) -> None:
    fake.script(Reply.json({"code": 40001, "message": "超过当天的发送次数限制[5]"}))
    assert channel(fake).send(make_message(), ctx).status == "permanent"


def test_serverchan3_keys_go_to_their_own_host_unless_base_url_is_set() -> None:
    sc3 = build_channel("serverchan", {"sendkey": "sctp1234tabcdef"}).config
    assert endpoint(sc3) == "https://1234.push.ft07.com/send/sctp1234tabcdef.send"
    relayed = build_channel(
        "serverchan", {"sendkey": "sctp1234tabcdef", "base_url": "https://relay.example"}
    ).config
    assert endpoint(relayed) == "https://relay.example/sctp1234tabcdef.send"
