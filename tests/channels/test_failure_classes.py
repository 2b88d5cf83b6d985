"""What every channel has in common: sent on success, retry on 429 and 5xx honouring the delay,
a retry on timeouts and refused connections, and the private-network refusal."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fakes.app_services import FeishuAppFake, OneBotFake, WeChatTestFake, WeComAppFake
from fakes.channel_services import (
    BarkFake,
    DingTalkFake,
    DiscordFake,
    FakeService,
    FeishuFake,
    GotifyFake,
    NtfyFake,
    PushPlusFake,
    Reply,
    ServerChanFake,
    SlackFake,
    TelegramFake,
    WebhookSink,
    WeComFake,
)

from messagepusher.actors.channels import REGISTRY, build_channel


@dataclass(frozen=True)
class Case:
    fake: Callable[[], FakeService]
    config: Callable[[str], dict[str, Any]]
    rate_limited: Reply  # the service's own 429, asking for 7 seconds


HEADER_429 = Reply.json({"error": "too many requests"}, 429, {"Retry-After": "7"})

HTTP_CASES: dict[str, Case] = {
    "wecom": Case(
        lambda: WeComFake("wk-0123456789"),
        lambda url: {"key": "wk-0123456789", "base_url": url},
        HEADER_429,
    ),
    "dingtalk": Case(
        lambda: DingTalkFake("dt-token-1234", "SECdingtalk"),
        lambda url: {"access_token": "dt-token-1234", "secret": "SECdingtalk", "base_url": url},
        HEADER_429,
    ),
    "feishu": Case(
        lambda: FeishuFake("fs-hook-1234", "fs-secret"),
        lambda url: {"token": "fs-hook-1234", "secret": "fs-secret", "base_url": url},
        HEADER_429,
    ),
    "lark": Case(
        lambda: FeishuFake("lk-hook-1234", "lk-secret"),
        lambda url: {"token": "lk-hook-1234", "secret": "lk-secret", "base_url": url},
        HEADER_429,
    ),
    "bark": Case(
        lambda: BarkFake("bark-device-1"),
        lambda url: {"device_key": "bark-device-1", "base_url": url},
        HEADER_429,
    ),
    "serverchan": Case(
        lambda: ServerChanFake("SCT12345abc"),
        lambda url: {"sendkey": "SCT12345abc", "base_url": url},
        HEADER_429,
    ),
    "pushplus": Case(
        lambda: PushPlusFake("pp-token-123"),
        lambda url: {"token": "pp-token-123", "base_url": url},
        HEADER_429,
    ),
    "telegram": Case(
        lambda: TelegramFake("123456:TG-token", "-100123"),
        lambda url: {"bot_token": "123456:TG-token", "chat_id": -100123, "base_url": url},
        Reply.json(
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 7",
                "parameters": {"retry_after": 7},
            },
            429,
        ),
    ),
    "discord": Case(
        lambda: DiscordFake("111", "dc-token"),
        lambda url: {"url": f"{url}/api/webhooks/111/dc-token"},
        Reply.json(
            {"message": "You are being rate limited.", "retry_after": 7.0, "global": False}, 429
        ),
    ),
    "slack": Case(
        lambda: SlackFake("/services/T0/B0/sl-token"),
        lambda url: {"url": f"{url}/services/T0/B0/sl-token"},
        Reply(429, "rate limited", {"Retry-After": "7"}),
    ),
    "ntfy": Case(
        lambda: NtfyFake("alerts", "tk_ntfytoken"),
        lambda url: {"topic": "alerts", "token": "tk_ntfytoken", "base_url": url},
        Reply.json(
            {"code": 42901, "http": 429, "error": "limit reached: too many requests"},
            429,
            {"Retry-After": "7"},
        ),
    ),
    "gotify": Case(
        lambda: GotifyFake("AppToken.123"),
        lambda url: {"token": "AppToken.123", "base_url": url},
        HEADER_429,
    ),
    "webhook": Case(
        lambda: WebhookSink("hook-secret"),
        lambda url: {"url": f"{url}/hook", "secret": "hook-secret"},
        HEADER_429,
    ),
    "wechat_test": Case(
        lambda: WeChatTestFake("wx-app", "wx-secret", "tpl", ["o-1"]),
        lambda url: {
            "app_id": "wx-app",
            "app_secret": "wx-secret",
            "template_id": "tpl",
            "open_id": "o-1",
            "base_url": url,
        },
        HEADER_429,
    ),
    "wecom_app": Case(
        lambda: WeComAppFake("ww-corp", "agent-secret", 1000002, ["u1"]),
        lambda url: {
            "corp_id": "ww-corp",
            "agent_id": 1000002,
            "agent_secret": "agent-secret",
            "base_url": url,
        },
        HEADER_429,
    ),
    "feishu_app": Case(
        lambda: FeishuAppFake("cli_app", "app-secret", {"open_id": {"ou_1"}}),
        lambda url: {
            "app_id": "cli_app",
            "app_secret": "app-secret",
            "receive_id": "ou_1",
            "base_url": url,
        },
        HEADER_429,
    ),
    "onebot": Case(
        lambda: OneBotFake("ob-token", {10001}, set()),
        lambda url: {"base_url": url, "access_token": "ob-token", "user_id": 10001},
        HEADER_429,
    ),
}
# These fetch an access token first, cached in the database.
TOKEN_TYPES = {"wechat_test", "wecom_app", "feishu_app"}


@pytest.fixture(params=sorted(HTTP_CASES))
def case(request: pytest.FixtureRequest) -> Iterator[tuple[str, Case, FakeService]]:
    name = request.param
    if name in TOKEN_TYPES:
        request.getfixturevalue("db")
    with HTTP_CASES[name].fake() as fake:
        yield name, HTTP_CASES[name], fake


def test_every_registered_type_is_covered_here_or_by_its_own_non_http_tests() -> None:
    assert set(REGISTRY) == set(HTTP_CASES) | {"email", "apprise", "client", "none"}


def test_a_success_answer_is_sent_after_the_fake_checked_path_shape_and_signature(
    case, ctx, make_message
) -> None:
    name, spec, fake = case
    result = build_channel(name, spec.config(fake.url)).send(make_message(), ctx)
    assert result.status == "sent", result.detail
    assert fake.problems == []
    assert len(fake.requests) == 1


def test_a_429_is_retried_after_the_delay_the_service_asks_for(case, ctx, make_message) -> None:
    name, spec, fake = case
    fake.script(spec.rate_limited)
    result = build_channel(name, spec.config(fake.url)).send(make_message(), ctx)
    assert result.status == "retry"
    assert result.retry_after == 7.0
    assert result.response_code == 429


def test_a_5xx_is_retried(case, ctx, make_message) -> None:
    name, spec, fake = case
    fake.script(Reply(502, "<html>Bad Gateway</html>"))
    result = build_channel(name, spec.config(fake.url)).send(make_message(), ctx)
    assert result.status == "retry"
    assert result.response_code == 502
    assert "502" in result.detail


def test_a_503_with_retry_after_is_retried_after_that_delay(case, ctx, make_message) -> None:
    name, spec, fake = case
    fake.script(Reply(503, "maintenance", {"Retry-After": "120"}))
    result = build_channel(name, spec.config(fake.url)).send(make_message(), ctx)
    assert (result.status, result.retry_after) == ("retry", 120.0)


def test_a_loopback_target_is_refused_naming_allow_private_networks(
    case, guarded_ctx, make_message
) -> None:
    name, spec, fake = case
    result = build_channel(name, spec.config(fake.url)).send(make_message(), guarded_ctx)
    assert result.status == "permanent"
    assert "allow_private_networks" in result.detail
    assert fake.requests == []


def test_a_timeout_is_retried(transport, make_message) -> None:
    from messagepusher.actors.channels.base import SendContext

    quick = SendContext(
        delivery_id=1, transport=transport, timeout_seconds=0.3, allow_private_networks=True
    )
    with WebhookSink() as fake:
        fake.script(Reply(hang=True))
        result = build_channel("webhook", {"url": f"{fake.url}/slow"}).send(make_message(), quick)
    assert result.status == "retry"
    assert "timed out" in result.detail


def test_a_refused_connection_is_retried(ctx, make_message) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nothing listens there
    result = build_channel("webhook", {"url": f"http://127.0.0.1:{port}/hook"}).send(
        make_message(), ctx
    )
    assert result.status == "retry"
    assert "connection failed" in result.detail


def test_a_secret_in_the_url_never_appears_in_a_connection_error(ctx, make_message) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {
        "bot_token": "987654:VERY-SECRET-TOKEN",
        "chat_id": 1,
        "base_url": f"http://127.0.0.1:{port}",
    }
    result = build_channel("telegram", config).send(make_message(), ctx)
    assert result.status == "retry"
    assert "VERY-SECRET-TOKEN" not in result.detail
