"""systemd notifications over $NOTIFY_SOCKET with the standard library only.

A no-op when the service is not started by systemd (no NOTIFY_SOCKET).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send one datagram such as "READY=1" or "WATCHDOG=1"; returns whether it was sent.

    Runs in the caller's thread and never raises: a broken socket is logged once per call.
    """
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
