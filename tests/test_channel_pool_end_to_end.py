"""Every channel type beyond webhook and e-mail, sent by the running server to a local fake service.

The channel's secrets go through the database encrypted and must come out right for the fake to
accept the call; the service's retry-after is honoured; per-channel pacing (docs/channels.md "Rate").
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
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
from support.ops import db_file
from support.server import Client

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")
FINAL = ("delivered", "failed", "partially_failed", "cancelled")


@dataclass
class Case:
    fake: Callable[[], FakeService]
    config: Callable[[str], dict[str, Any]]
    secret: str  # a value of the config that is stored encrypted and needed by the fake


CASES: dict[str, Case] = {
    "wecom": Case(
        lambda: WeComFake("wk-e2e-key-0123"),
        lambda url: {"key": "wk-e2e-key-0123", "base_url": url},
        "wk-e2e-key-0123",
    ),
    "dingtalk": Case(
        lambda: DingTalkFake("dt-e2e-token", "SECe2edingtalk"),
        lambda url: {"access_token": "dt-e2e-token", "secret": "SECe2edingtalk", "base_url": url},
        "SECe2edingtalk",
    ),
    "feishu": Case(
        lambda: FeishuFake("fs-e2e-hook", "fs-e2e-secret"),
        lambda url: {"token": "fs-e2e-hook", "secret": "fs-e2e-secret", "base_url": url},
        "fs-e2e-secret",
    ),
    "lark": Case(
        lambda: FeishuFake("lk-e2e-hook", "lk-e2e-secret"),
        lambda url: {"token": "lk-e2e-hook", "secret": "lk-e2e-secret", "base_url": url},
        "lk-e2e-secret",
    ),
    "bark": Case(
        lambda: BarkFake("bark-e2e-device"),
        lambda url: {"device_key": "bark-e2e-device", "base_url": url},
        "bark-e2e-device",
    ),
    "serverchan": Case(
        lambda: ServerChanFake("SCTe2e12345key"),
        lambda url: {"sendkey": "SCTe2e12345key", "base_url": url},
        "SCTe2e12345key",
    ),
    "pushplus": Case(
        lambda: PushPlusFake("pp-e2e-token-99"),
        lambda url: {"token": "pp-e2e-token-99", "base_url": url},
        "pp-e2e-token-99",
    ),
    "telegram": Case(
        lambda: TelegramFake("777:TG-e2e-token", "-100777"),
        lambda url: {"bot_token": "777:TG-e2e-token", "chat_id": -100777, "base_url": url},
        "777:TG-e2e-token",
    ),
    "discord": Case(
        lambda: DiscordFake("4242", "dc-e2e-token"),
        lambda url: {"url": f"{url}/api/webhooks/4242/dc-e2e-token"},
        "dc-e2e-token",
    ),
    "slack": Case(
        lambda: SlackFake("/services/T9/B9/sl-e2e-token"),
        lambda url: {"url": f"{url}/services/T9/B9/sl-e2e-token"},
        "sl-e2e-token",
    ),
    "ntfy": Case(
        lambda: NtfyFake("e2e-alerts", "tk_e2entfytoken"),
        lambda url: {"topic": "e2e-alerts", "token": "tk_e2entfytoken", "base_url": url},
        "tk_e2entfytoken",
    ),
    "gotify": Case(
        lambda: GotifyFake("E2eApp.Token"),
        lambda url: {"token": "E2eApp.Token", "base_url": url},
        "E2eApp.Token",
    ),
    "apprise": Case(
        WebhookSink,
        lambda url: {"urls": [url.replace("http://", "json://") + "/apprise-e2e"]},
        "/apprise-e2e",
    ),
}
# docs/channels.md "Rate": sends a minute per channel; the pool allows a burst of a tenth of it.
RATE_PER_MINUTE = {
    "wecom": 20,
    "dingtalk": 20,
    "telegram": 20,
    "discord": 30,
    "slack": 60,
    "feishu": 100,
    "lark": 100,
}
# How each service asks for a pause, as docs/channels.md lists it.
RETRY_AFTER_SECONDS = 3
ASKS_FOR_A_PAUSE = {
    "telegram": Reply.json(
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": RETRY_AFTER_SECONDS},
        },
        429,
    ),
    "discord": Reply.json(
        {"message": "You are being rate limited.", "retry_after": RETRY_AFTER_SECONDS}, 429
    ),
    "slack": Reply(429, "rate_limited", {"Retry-After": str(RETRY_AFTER_SECONDS)}),
    "ntfy": Reply.json(
        {"code": 42901, "http": 429, "error": "limit reached"},
        429,
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    ),
}


@pytest.fixture
def server(server_factory):
    # A short back-off, so that only an honoured retry-after can explain a long pause.
    return server_factory(
        {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_RETRY__BASE_DELAY_SECONDS": "0.2"}
    )


@pytest.fixture
def fakes():
    started = {name: case.fake().__enter__() for name, case in CASES.items()}
    yield started
    for fake in started.values():
        fake.__exit__(None, None, None)


def make_channels(api: Client, fakes: dict[str, FakeService], names: list[str]) -> None:
    for name in names:
        made = api.post(
            "/api/v1/channels",
            json={
                "name": f"e2e-{name}",
                "type": name,
                "config": CASES[name].config(fakes[name].url),
            },
        )
        assert made.status_code == 201, made.text


def send(api: Client, title: str, channel: str) -> int:
    sent = api.post("/api/v1/messages", json={"title": title, "body": "e2e", "channels": [channel]})
    assert sent.status_code == 202, sent.text
    return sent.json()["id"]


def test_every_channel_type_is_delivered_by_the_running_server_with_its_secrets_from_the_database(
    server, fakes
):
    api = server.client(server.create_key())
    make_channels(api, fakes, list(CASES))
    ids = {name: send(api, f"e2e-title-{name}", f"e2e-{name}") for name in CASES}
    for name, message_id in ids.items():
        message = api.wait_message(message_id, FINAL, timeout=60)
        assert message["status"] == "delivered", (name, message)
        fake = fakes[name]
        assert fake.problems == [], (name, fake.problems)
        assert len(fake.requests) == 1, (name, fake.requests)
        assert f"e2e-title-{name}".encode() in fake.requests[0].body, (name, fake.requests[0])
    stored = sqlite3.connect(db_file(server)).execute("SELECT config FROM channel").fetchall()
    for name, case in CASES.items():
        assert case.secret not in str(stored), f"{name}'s secret is stored in clear"


def test_a_pause_each_service_asks_for_is_honoured_before_the_retry(server, fakes):
    api = server.client(server.create_key())
    make_channels(api, fakes, list(ASKS_FOR_A_PAUSE))
    ids = {}
    for name, reply in ASKS_FOR_A_PAUSE.items():
        fakes[name].script(reply)
        ids[name] = send(api, "paused", f"e2e-{name}")
    for name, message_id in ids.items():
        message = api.wait_message(message_id, FINAL, timeout=60)
        assert message["status"] == "delivered", (name, message)
        assert message["deliveries"][0]["attempts"] == 2, (name, message)
        first, second = fakes[name].requests
        assert second.at - first.at >= RETRY_AFTER_SECONDS, (name, second.at - first.at)


def test_each_rate_limited_type_is_paced_per_channel_at_its_documented_rate(server, fakes):
    """A burst of sends per channel: past the bucket's burst, each waits for its token."""
    api = server.client(server.create_key())
    make_channels(api, fakes, list(RATE_PER_MINUTE))
    counts = {name: math.ceil(max(1.0, rate / 6)) + 2 for name, rate in RATE_PER_MINUTE.items()}
    ids = [
        send(api, f"paced-{name}-{n}", f"e2e-{name}")
        for name in RATE_PER_MINUTE
        for n in range(counts[name])
    ]
    for message_id in ids:
        assert api.wait_message(message_id, FINAL, timeout=90)["status"] == "delivered"
    for name, per_minute in RATE_PER_MINUTE.items():
        arrivals = sorted(r.at for r in fakes[name].requests)
        assert len(arrivals) == counts[name], (name, len(arrivals))
        # After the burst, tokens come at per_minute/60 a second, so the last send cannot come
        # sooner than this after the first: a lower bound, which a slow machine only exceeds.
        least = (counts[name] - max(1.0, per_minute / 6)) * 60.0 / per_minute
        assert arrivals[-1] - arrivals[0] >= least * 0.9, (name, arrivals[-1] - arrivals[0], least)
