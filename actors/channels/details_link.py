"""The "详情 / details" link of channels that carry only a short text, to the public message page.

The page is `{server.public_url}/m/{token}`; the token is the message's own, unguessable. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messagepusher.actors.channels.base import OutboundMessage
from messagepusher.actors.channels.http_common import Measure, truncate

LABEL = "详情 / details"
PREFERENCE = "public_page"  # a user's preference; false turns the page and the link off


def page_enabled(preferences: Mapping[str, Any] | None) -> bool:
    """Whether the user lets their messages have a public page (the default)."""
    return (preferences or {}).get(PREFERENCE, True) is not False


def page_url(
    public_url: str, token: str | None, preferences: Mapping[str, Any] | None
) -> str | None:
    """The page's address, or None: no server.public_url, no token (an older message), or the
    owner turned the page off."""
    if not public_url or not token or not page_enabled(preferences):
        return None
    return f"{public_url.rstrip('/')}/m/{token}"


def link_line(message: OutboundMessage, markdown: bool) -> str:
    """The line that ends the text: `详情 / details: URL` or a markdown link; "" without a page."""
    if not message.details_url:
        return ""
    if markdown:
        return f"[{LABEL}]({message.details_url})"
    return f"{LABEL}: {message.details_url}"


def with_link(text: str, message: OutboundMessage, markdown: bool = False) -> str:
    """`text` with the details line appended after a blank line (unchanged without a page)."""
    line = link_line(message, markdown)
    return f"{text}\n\n{line}" if line and text else (line or text)


def fit_with_link(
    text: str, message: OutboundMessage, limit: int, measure: Measure = len, markdown: bool = False
) -> tuple[str, bool]:
    """`text` cut to leave room for the details line within `limit`, then the line; the flag
    says whether the text was cut. Drop-in for http_common.truncate in a channel's build."""
    line = link_line(message, markdown)
    if not line:
        return truncate(text, limit, measure)
    room = limit - measure(f"\n\n{line}")
    if room <= 0:
        return truncate(text, limit, measure)
    cut_text, cut = truncate(text, room, measure)
    return with_link(cut_text, message, markdown), cut
