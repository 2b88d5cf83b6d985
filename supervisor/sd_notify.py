"""systemd notifications over $NOTIFY_SOCKET with the standard library only.

A no-op when the service is not started by systemd (no NOTIFY_SOCKET). In a worker process
under a root, notifications go to the root instead (set_forwarder), which alone tells systemd.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)

_forwarder: Callable[[str], bool] | None = None


def set_forwarder(forward: Callable[[str], bool] | None) -> None:
    """Send every later notification to `forward` (a worker's pipe to its root), not systemd."""
    global _forwarder
    _forwarder = forward


def notify(state: str) -> bool:
    """Send one datagram such as "READY=1" or "WATCHDOG=1"; returns whether it was sent.

    Runs in the caller's thread and never raises: a broken socket is logged once per call.
    """
    if _forwarder is not None:
        return _forwarder(state)
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log.warning("sd_notify %s failed: %s", state.split("=", 1)[0], exc)
        return False


def watchdog_interval() -> float | None:
    """Half of WatchdogSec (from $WATCHDOG_USEC), or None when the watchdog is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None
