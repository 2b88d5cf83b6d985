"""The Apprise channel (type "apprise"): any Apprise URL (mailto://, tgram://, pover:// …).

The escape hatch for other services: Apprise says only yes or no, so every failure is a retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, field_validator

from messagepusher.actors.channels.base import (
    Channel,
    ChannelConfig,
    OutboundMessage,
    SendContext,
    SendResult,
    register,
)
from messagepusher.actors.channels.http_common import render
from messagepusher.outbound import netguard

if TYPE_CHECKING:
    import apprise

# Apprise's plain-HTTP plugins: their targets obey the private-network rule like a webhook's.
# Other schemes name a service (or a non-HTTP protocol) and are not checked.
HTTP_SCHEMES = {
    "json": "http",
    "jsons": "https",
    "xml": "http",
    "xmls": "https",
    "form": "http",
    "forms": "https",
}


def _load(url: str) -> apprise.plugins.NotifyBase | None:
    import apprise  # here, not at the top: apprise takes about a second to import

    return apprise.Apprise.instantiate(url)


class AppriseConfig(ChannelConfig):
    urls: list[str] = Field(
        min_length=1, description="Apprise URLs, each a service (see the Apprise wiki)."
    )

    @field_validator("urls")
    @classmethod
    def _loadable(cls, value: list[str]) -> list[str]:
        for index, url in enumerate(value):
            if _load(url) is None:
                scheme = urlsplit(url).scheme or "(none)"
                raise ValueError(
                    f"urls[{index}] (scheme {scheme}) is not a URL Apprise can load: check its form "
                    "at https://github.com/caronc/apprise/wiki"
                )
        return value

    @field_validator("proxy")
    @classmethod
    def _no_proxy(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("is not supported for apprise; remove it")
        return value


def http_target(url: str) -> str | None:
    """The http(s) URL behind an Apprise json://, xml:// or form:// URL; None for other schemes."""
    parts = urlsplit(url)
    scheme = HTTP_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        return None
    port = f":{parts.port}" if parts.port else ""
    return f"{scheme}://{parts.hostname}{port}{parts.path}"


@register
class AppriseChannel(Channel):
    """Some Apprise plugins (wecombot://, dingtalk://, schan://) check only the HTTP status, so
    errors in an HTTP 200 body pass as sent: the native channels read the body."""

    type_name = "apprise"
    Config = AppriseConfig
    secret_fields = ("urls",)
    config: AppriseConfig

    def targets(self) -> list[str]:
        return [target for target in map(http_target, self.config.urls) if target]

    def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        """Notify every Apprise URL in turn.

        Runs in a channel-pool worker thread; each URL's plugin gets ctx.timeout_seconds as its
        connect and read timeout unless the URL sets cto/rto. Does not raise for service errors:
        a refused http target is permanent (nothing is sent), any Apprise failure is a retry
        (Apprise does not say whether it is permanent); a retry notifies every URL again.
        """
        import apprise  # see _load

        try:
            for target in self.targets():
                ctx.check_target(target)
        except netguard.PrivateNetworkRefused as exc:
            return SendResult.permanent(str(exc))
        except OSError as exc:
            return SendResult.retry(f"cannot resolve an apprise target: {exc}")
        markdown = message.format == "markdown"
        body = render(message, markdown=markdown, title=False) or message.title
        body_format = apprise.NotifyFormat.MARKDOWN if markdown else apprise.NotifyFormat.TEXT
        notify_type = (
            apprise.NotifyType.WARNING if message.priority >= 4 else apprise.NotifyType.INFO
        )
        failed = []
        for index, url in enumerate(self.config.urls):
            parts = urlsplit(url)
            plugin = _load(url)  # None only when a plugin lost its dependency since creation
            if plugin is not None:
                query = parse_qs(parts.query)
                if "cto" not in query:
                    plugin.socket_connect_timeout = ctx.timeout_seconds
                if "rto" not in query:
                    plugin.socket_read_timeout = ctx.timeout_seconds
                notifier = apprise.Apprise()
                notifier.add(plugin)
                if notifier.notify(
                    body=body, title=message.title, body_format=body_format, notify_type=notify_type
                ):
                    continue
            failed.append(f"urls[{index}] ({parts.scheme}://…)")  # never the URL: it holds secrets
        if failed:
            return SendResult.retry(
                f"apprise could not notify {len(failed)} of {len(self.config.urls)} URLs: {', '.join(failed)}"
            )
        return SendResult.sent(notes=[f"notified {len(self.config.urls)} apprise URL(s)"])
