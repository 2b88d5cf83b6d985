"""Fixtures of the channel tests: send contexts with a real transport, and a message factory.

The fakes live in tests/fakes (importable as `fakes`, tests/ being on sys.path for pytest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from messagepusher.actors.channels.base import OutboundMessage, SendContext
from messagepusher.actors.channels.transport import Transport

MessageFactory = Callable[..., OutboundMessage]


@pytest.fixture
def transport() -> Iterator[Transport]:
    """The production transport: urllib3 directly, requests behind a proxy."""
    shared = Transport(pool_size=4, trust_env=False)
    yield shared
    shared.close()


@pytest.fixture
def ctx(transport: Transport) -> SendContext:
    """A context allowed to reach 127.0.0.1, where every fake lives."""
    return SendContext(
        delivery_id=42, transport=transport, timeout_seconds=5.0, allow_private_networks=True
    )


@pytest.fixture
def guarded_ctx(transport: Transport) -> SendContext:
    """The default production rule: private and loopback targets refused."""
    return SendContext(
        delivery_id=42, transport=transport, timeout_seconds=5.0, allow_private_networks=False
    )


@pytest.fixture
def make_message() -> MessageFactory:
    def make(**fields: Any) -> OutboundMessage:
        values: dict[str, Any] = {
            "id": 1001,
            "title": "磁盘告警 Disk alert",
            "body": "服务器 db-1 的磁盘使用率达到 91%。\nDisk usage on db-1 reached 91%.",
            "created_at": "2026-01-02T03:04:05Z",
        }
        values.update(fields)
        return OutboundMessage(**values)

    return make
