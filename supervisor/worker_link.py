"""A worker process's side of its link to the root: the inherited socket, beats, orphan watch.

The root starts a worker with MP_PROCESS_WORKER=<slot>,<start>,<listen fd>,<beat fd>,<life fd>.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from messagepusher.supervisor.faults import FaultInjector

log = logging.getLogger(__name__)

WORKER_ENV = "MP_PROCESS_WORKER"
# A worker whose root died has this long to drain before it exits regardless.
ORPHAN_EXIT_SECONDS = 1.5
EXIT_ORPHANED = 75


@dataclass(frozen=True)
class WorkerSpec:
    slot: int  # 1..N
    start: int  # 1 for the slot's first process, 2 for its first replacement …
    listen_fd: int
    beat_fd: int
    life_fd: int

    def encode(self) -> str:
        return f"{self.slot},{self.start},{self.listen_fd},{self.beat_fd},{self.life_fd}"

    @classmethod
    def decode(cls, text: str) -> WorkerSpec:
        """Raises ValueError on anything but five integers (the variable is the root's, not a user's)."""
        parts = [int(p) for p in text.split(",")]
        if len(parts) != 5:
            raise ValueError(f"{WORKER_ENV} must hold five integers, not {text!r}")
        return cls(*parts)


class WorkerLink:
    """Owned by the worker's main thread; `send` may be called from any thread."""

    def __init__(self, spec: WorkerSpec, heartbeat_fault: FaultInjector):
        self.spec = spec
        self.fault = heartbeat_fault
        self.orphaned = threading.Event()
        self._lock = threading.Lock()
        os.set_blocking(spec.beat_fd, False)

    @classmethod
    def from_environ(cls, faults: dict) -> WorkerLink | None:
        """The link when this process is a root's worker, else None (a process serving alone).

        Raises ValueError, one line for the operator, when the variable is not the root's."""
        text = os.environ.get(WORKER_ENV)
        if not text:
            return None
        fault = faults.get("heartbeat")
        try:
            spec = WorkerSpec.decode(text)
            if fault is not None and fault.worker and (fault.worker, 1) != (spec.slot, spec.start):
                fault = None
            return cls(spec, FaultInjector(fault))
        except (ValueError, OSError) as exc:
            raise ValueError(
                f"error: {WORKER_ENV}={text!r} is not a link from a root process ({exc}); "
                f"the root sets it for its workers only: unset it"
            ) from None

    def listening_socket(self) -> socket.socket:
        return socket.socket(fileno=self.spec.listen_fd)

    def send(self, line: str) -> bool:
        """Lines to the root: a beat, or systemd-style states (READY=1, then STATUS=… on its own line).

        Lines up to PIPE_BUF bytes reach the pipe whole, never interleaved with another's.
        Never blocks and never raises: a full pipe (the root is busy) drops the line, a broken
        one (the root died) is the orphan watch's business.
        """
        data = line.rstrip("\n").encode()[: select.PIPE_BUF - 1] + b"\n"
        with self._lock:
            try:
                os.write(self.spec.beat_fd, data)
                return True
            except (BlockingIOError, BrokenPipeError, OSError):
                return False

    def beat(self) -> None:
        """Main thread, every loop round: tell the root this process is alive.

        The `heartbeat` fault (tests) blocks here, so the process lives on but stops beating.
        """
        self.fault.before_entry("heartbeat")
        self.send("BEAT")

    def watch_root(self, on_orphaned: Callable[[], None]) -> None:
        """Start a daemon thread that waits for the root's end of the life pipe to close.

        The root never writes to it, so a read returns only when every copy of the write end
        is closed: the root died (or exited). Then `on_orphaned` (called in that thread; it
        must not block) asks for a stop, and the same thread exits the process with
        EXIT_ORPHANED after ORPHAN_EXIT_SECONDS whatever the stop is doing.
        """

        def wait() -> None:
            with contextlib.suppress(OSError):
                while os.read(self.spec.life_fd, 1):
                    pass
            self.orphaned.set()
            log.error("worker %d: the root process is gone; stopping", self.spec.slot)
            on_orphaned()
            # Whatever the stop is doing by then, this thread ends the process.
            time.sleep(ORPHAN_EXIT_SECONDS)
            os._exit(EXIT_ORPHANED)

        threading.Thread(target=wait, name="root-watch", daemon=True).start()
