"""Slack: the incoming-webhook request, escaping, and the permanent 4xx answers."""

from __future__ import annotations

import pytest
from fakes.channel_services import Reply, SlackFake

from messagepusher.actors.channels import build_channel

PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"


@pytest.fixture
def fake():
    with SlackFake(PATH) as fake:
        yield fake


def channel(fake):
    return build_channel("slack", {"url": f"{fake.url}{PATH}"})


def test_slack_posts_text_with_a_bold_title_and_escaped_control_characters(
    fake, ctx, make_message
) -> None:
    result = channel(fake).send(make_message(body="if a < b && c > d"), ctx)
    assert result.status == "sent"
    assert fake.requests[0].json() == {
        "text": "*磁盘告警 Disk alert*\n\nif a &lt; b &amp;&amp; c &gt; d"
    }


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
    ],
)
def test_slack_client_errors_are_permanent(fake, ctx, make_message, status: int, body: str) -> None:
    fake.script(Reply(status, body))
    result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.response_code) == ("permanent", status)
    assert body in result.detail


def test_slack_text_is_truncated_to_40000_characters(fake, ctx, make_message) -> None:
    result = channel(fake).send(make_message(body="s" * 50000), ctx)
    assert result.status == "sent", result.detail
    assert len(fake.requests[0].json()["text"]) == 40000
