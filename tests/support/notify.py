"""systemd's end of $NOTIFY_SOCKET for tests: a unix datagram socket that records every datagram
with when it came and the pid that sent it (from the kernel's credentials)."""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path


class NotifySocket:
    """Records (monotonic time, sender pid, text) in `received`, from a reader thread."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sd", dir="/tmp")  # short: unix socket paths are limited
        self.path = str(Path(self.dir) / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, int, str]] = []
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while self.running:
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except TimeoutError:
                continue
            pid = next(
                struct.unpack("3i", raw)[0]
                for level, kind, raw in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
            )
            self.received.append((time.monotonic(), pid, data.decode()))

    def times(self, state: str) -> list[float]:
        """When each datagram carrying the line `state` came."""
        return [at for at, _pid, text in list(self.received) if state in text.splitlines()]

    def lines(self) -> list[str]:
        """Every line of every datagram, in order."""
        return [line for _at, _pid, text in list(self.received) for line in text.splitlines()]

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)
