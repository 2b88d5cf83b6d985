"""The channel plugin interface: what a channel receives, what it answers, how it registers.

A channel turns one delivery into one service request; building the request and
classifying the answer are pure, only `send` does I/O.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from messagepusher.actors.channels.transport import Transport
from messagepusher.outbound import netguard


@dataclass(frozen=True)
class OutboundMessage:
    """The message as a channel sees it (already fetched and AI-processed)."""

    id: int
    title: str
    body: str
    format: Literal["text", "markdown", "html"] = "text"
    url: str | None = None
    priority: int = 3
    fetched: dict[str, Any] | None = None  # {"title", "text"} when a page was fetched
    ai: dict[str, Any] | None = None  # {"task", "result"} when an AI step ran
    created_at: str = ""
    recipients: tuple[str, ...] = ()  # who to address instead of the channel's own (compat `to`)
    details_url: str | None = None  # the public message page (actors/channels/details_link.py)


@dataclass(frozen=True)
class SendContext:
    """What the channel pool hands a channel besides the message."""

    delivery_id: int
    transport: Transport
    timeout_seconds: float = 15.0
    allow_private_networks: bool = False
    attempt: int = 1
    allowed_private_targets: tuple[str, ...] = ()

    def check_target(self, url: str) -> None:
        """Raise netguard.PrivateNetworkRefused when `url` may not be reached."""
        netguard.check_url(url, self.allow_private_networks, self.allowed_private_targets)


SendStatus = Literal["sent", "retry", "permanent"]


@dataclass
class SendResult:
    """One send's outcome. `retry_after` (seconds) overrides the back-off when the service says so."""

    status: SendStatus
    detail: str = ""
    response_code: int | None = None
    response: str | None = None
    retry_after: float | None = None
    parts: int = 1
    notes: list[str] = field(default_factory=list)
    remote_id: str | None = None  # the id the service gave the message, for recall and edit

    @classmethod
    def sent(cls, code: int | None = None, response: str | None = None, **kw: Any) -> SendResult:
        return cls("sent", "", code, response, **kw)

    @classmethod
    def retry(
        cls,
        detail: str,
        code: int | None = None,
        response: str | None = None,
        retry_after: float | None = None,
    ) -> SendResult:
        return cls("retry", detail, code, response, retry_after)

    @classmethod
    def permanent(
        cls, detail: str, code: int | None = None, response: str | None = None
    ) -> SendResult:
        return cls("permanent", detail, code, response)


ChangeStatus = Literal["recalled", "edited", "not_supported", "failed"]


@dataclass(frozen=True)
class ChangeResult:
    """What became of one recall or edit of a delivery already sent; `detail` says why not."""

    status: ChangeStatus
    detail: str = ""


class ChannelConfig(BaseModel):
    """Base of every channel's config schema: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    proxy: str | None = Field(
        None, description="Outbound proxy for this channel, e.g. http://proxy:3128."
    )


class Channel(abc.ABC):
    """A channel type. Subclasses set `type_name`, `Config` and `secret_fields`, and implement send.

    `send` runs in a channel-pool worker thread; it must not raise for service errors
    (return SendResult.retry/permanent). An exception that escapes is treated by the
    pool as a retryable failure with the exception text as the error.
    """

    type_name: ClassVar[str]
    Config: ClassVar[type[ChannelConfig]] = ChannelConfig
    secret_fields: ClassVar[tuple[str, ...]] = ()
    rate_per_minute: ClassVar[float] = 0  # the service's per-channel limit; 0: the pool's default
    # True when the channel sends to OutboundMessage.recipients in place of its configured ones.
    addresses_recipients: ClassVar[bool] = False

    def __init__(self, config: ChannelConfig, now: Callable[[], float] = time.time):
        self.config = config
        self.now = now  # the clock (signatures, Retry-After dates); tests pass a fixed one

    def targets(self) -> list[str]:
        """URLs this channel will contact, for the private-network check at creation."""
        return []

    @abc.abstractmethod
    def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        """Deliver `message` through the service; a pool worker thread runs it."""

    def recall(self, remote_id: str | None, ctx: SendContext) -> ChangeResult:
        """Take a sent message back from the service (HTTP worker thread); never raises.

        The default: the service has no way to, or this channel does not use it.
        """
        return ChangeResult("not_supported", f"{self.type_name} cannot take back a message")

    def edit(
        self, remote_id: str | None, message: OutboundMessage, ctx: SendContext
    ) -> ChangeResult:
        """Replace a sent message's text with `message`'s (HTTP worker thread); never raises."""
        return ChangeResult("not_supported", f"{self.type_name} cannot change a sent message")


REGISTRY: dict[str, type[Channel]] = {}


def register(cls: type[Channel]) -> type[Channel]:
    REGISTRY[cls.type_name] = cls
    return cls


def mask_secret(value: str) -> str:
    """`****1234`: enough of a secret to recognise it, never enough to use it."""
    return "****" + value[-4:] if len(value) > 8 else "****"
