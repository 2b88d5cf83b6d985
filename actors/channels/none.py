"""The none channel: the message is kept in history and the inbox and sent nowhere.

Streams to devices leave its inbox rows out; only GET /api/v1/inbox lists them.
"""

from __future__ import annotations

from messagepusher.actors.channels.base import register
from messagepusher.actors.channels.client import ClientChannel


@register
class NoneChannel(ClientChannel):
    """Stores like `client` (same thread, same failure handling); no device is told."""

    type_name = "none"
