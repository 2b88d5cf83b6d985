"""The zygote: one process that has imported everything a worker needs and forks the workers.

Why: a worker started as a fresh interpreter spends most of its start importing the service
(1 to 4 s on a loaded 2-core box). A fork of a process that has already imported it skips that,
so a killed worker is serving again well within 2 s.

How it goes (a fork server rather than a warm spare: one zygote serves every slot, a spare
would have to be replaced after each use, paying the import again):

- The root runs threads (its node registry), so it never forks itself: it starts the zygote as
  a fresh interpreter, `main.py serve` with MP_PROCESS_ZYGOTE=<control fd>,<listen fd>, and
  makes itself the child subreaper (Linux prctl) first.
- The zygote imports every module of every package of the service, checks that it runs no
  thread but its main one (a fork copies only the calling thread: a lock held by another would
  stay locked forever in the child), opens no database, says READY on the control socket and
  waits there.
- To start a worker the root sends "FORK <slot> <start>" with the worker's beat-pipe write end
  and life-pipe read end (SCM_RIGHTS). The zygote forks twice: the middle process forks the
  worker and exits at once, so the worker is re-parented to the root, its subreaper, which
  reaps it and reads its exit status as for any child. The zygote answers "PID <n>".
- The worker, in the forked child, closes the zygote's end of the control socket, renews what
  is per process (the lease-owner id `mailbox.NODE_ID`, host:pid:start-time, so a replacement
  never reuses a dead worker's id; the `random` seed; prometheus_client reads os.getpid() when
  the Runtime creates its metrics, after the fork), sets MP_PROCESS_WORKER and returns to
  main.py, which loads the configuration afresh and serves as any worker does.
- The zygote exits when the control socket closes: the root stopped or died.
- If the zygote dies, the root records it (supervisor event, actor "zygote") and starts another;
  meanwhile, or for good past the restart intensity, workers start as fresh interpreters.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

ZYGOTE_ENV = "MP_PROCESS_ZYGOTE"
# Every package of the service (pyproject's package-dir), imported by name: the zygote loads
# code, it depends on none of it.
PACKAGES = ("supervisor", "accounts", "messages", "outbound", "actors", "operations", "http")
MESSAGE_BYTES = 256
PR_SET_CHILD_SUBREAPER = 36


class ZygoteError(Exception):
    """The zygote did not answer as it should (it died, hung or could not fork)."""


# --- the root's side -------------------------------------------------------------------------


def become_subreaper() -> bool:
    """Root's main thread: orphans of our descendants become our children (Linux only).

    False where prctl is missing or refuses; then the root starts fresh interpreters instead.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class ForkedWorker:
    """A worker forked by the zygote and re-parented to the root: Popen's interface, by pid.

    Root's main thread only. `poll` reaps it (waitpid), so its exit status is the root's.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # not our child after all: gone, status unknown
                self.returncode = 255
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Raises subprocess.TimeoutExpired when it still runs after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The root's handle on its zygote process (root's main thread only)."""

    def __init__(self, command: list[str], env: dict[str, str], listen_fd: int):
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**env, ZYGOTE_ENV: f"{theirs.fileno()},{listen_fd}"}
        try:
            self.proc = subprocess.Popen(command, env=env, pass_fds=(theirs.fileno(), listen_fd))
        except OSError:
            self.control.close()
            raise
        finally:
            theirs.close()
        self.ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_ready(self, timeout: float = 0.0) -> bool:
        """Whether it has said READY, waiting up to `timeout` seconds for it.

        Raises ZygoteError when it closed the socket or said something else.
        """
        if self.ready:
            return True
        self.control.settimeout(timeout if timeout > 0 else None)
        if timeout <= 0:
            self.control.setblocking(False)
        try:
            message = self.control.recv(MESSAGE_BYTES)
        except (BlockingIOError, TimeoutError):
            return False
        except OSError as exc:
            raise ZygoteError(f"the zygote's socket failed: {exc}") from None
        if message != b"READY":
            raise ZygoteError(f"the zygote said {message[:80]!r} instead of READY")
        self.ready = True
        return True

    def fork(
        self, slot: int, start: int, beat_fd: int, life_fd: int, timeout: float
    ) -> ForkedWorker:
        """Ask for one worker process; the caller still owns (and closes) both fds.

        Raises ZygoteError when the zygote does not answer with a pid within `timeout`.
        """
        self.control.settimeout(timeout)
        try:
            socket.send_fds(self.control, [f"FORK {slot} {start}".encode()], [beat_fd, life_fd])
            answer = self.control.recv(MESSAGE_BYTES).decode(errors="replace")
        except OSError as exc:
            raise ZygoteError(f"the zygote did not answer: {exc}") from None
        if not answer.startswith("PID "):
            raise ZygoteError(f"the zygote answered {answer[:80]!r}")
        return ForkedWorker(int(answer[4:]))

    def stop(self, timeout: float = 5.0) -> int:
        """Close the control socket (it exits on that), kill it if it lingers; its exit code."""
        self.control.close()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


# --- the zygote's side -----------------------------------------------------------------------


def preload() -> int:
    """Import every module a worker may need; the count. Imports have no side effect here.

    Raises ImportError for a module that cannot load: the zygote exits, the root falls back.
    """
    count = 0
    for package in PACKAGES:
        name = f"messagepusher.{package}"
        for folder in importlib.import_module(name).__path__:
            base = Path(folder)
            for path in sorted(base.rglob("*.py")):
                parts = list(path.relative_to(base).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                importlib.import_module(".".join([name, *parts]))
                count += 1
    return count


def assert_single_threaded() -> None:
    """Raises RuntimeError when a thread besides the main one runs: forking would be unsafe."""
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        raise RuntimeError(f"the zygote must run no thread before it forks; it runs {others}")


def renew_process_identity(modules: dict) -> None:
    """In a freshly forked worker: its own lease-owner id, process handle and random sequence.

    Modules that copied NODE_ID at import (`from … import NODE_ID`) get the new value too, and
    module-level psutil handles of the zygote (`psutil.Process()` at import) this process's.
    """
    import psutil

    from messagepusher.supervisor import mailbox

    old = mailbox.NODE_ID
    new = mailbox.renew_node_id()
    for name, module in list(modules.items()):
        if not name.startswith("messagepusher."):
            continue
        for attribute, value in list(vars(module).items()):
            if attribute == "NODE_ID" and value == old:
                setattr(module, attribute, new)
            elif isinstance(value, psutil.Process) and value.pid != os.getpid():
                setattr(module, attribute, psutil.Process())  # RSS and CPU of this process
    random.seed()


def _become_worker(control: socket.socket, slot: int, start: int, fds: list[int], listen_fd: int):
    from messagepusher.supervisor.worker_link import WORKER_ENV, WorkerSpec

    control.close()
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    os.environ.pop(ZYGOTE_ENV, None)
    os.environ[WORKER_ENV] = WorkerSpec(slot, start, listen_fd, fds[0], fds[1]).encode()
    renew_process_identity(sys.modules)


def _fork_worker(control: socket.socket, request: str, fds: list[int], listen_fd: int) -> int:
    """Zygote's main thread: fork one worker; its pid here, 0 in the worker itself.

    Raises ValueError on a malformed request, OSError when a fork fails.
    """
    word, slot, start = request.split()
    if word != "FORK" or len(fds) != 2:
        raise ValueError(f"not a fork request: {request!r} with {len(fds)} fds")
    report_read, report_write = os.pipe()
    middle = os.fork()
    if middle == 0:  # neither this process nor the worker may ever go back to the zygote loop
        try:
            os.close(report_read)
            worker = os.fork()
            if worker == 0:
                os.close(report_write)
                _become_worker(control, int(slot), int(start), fds, listen_fd)
                return 0
            os.write(report_write, str(worker).encode())
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    os.close(report_write)
    with os.fdopen(report_read, "rb") as report:
        text = report.read()
    os.waitpid(middle, 0)
    if not text:
        raise OSError("the middle process could not fork the worker")
    return int(text)


def run_zygote(text: str) -> None:
    """Main thread of the zygote process; returns only in a forked worker, which then serves.

    The zygote itself exits: 0 when the root closes the control socket, 1 (with a traceback
    on stderr) when it cannot load or fork; the root then starts workers another way.
    Raises ValueError, one line for the operator, when `text` is not the root's.
    """
    try:
        control_fd, listen_fd = (int(part) for part in text.split(","))
        control = socket.socket(fileno=control_fd)
    except (ValueError, OSError) as exc:
        raise ValueError(
            f"error: {ZYGOTE_ENV}={text!r} is not a link from a root process ({exc}); "
            "the root sets it for its zygote only: unset it"
        ) from None
    for signum in (signal.SIGINT, signal.SIGHUP):  # the root passes these on to the workers
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    preload()
    assert_single_threaded()
    gc.freeze()  # imported objects stay in a generation the collector never touches: pages stay shared
    control.sendall(b"READY")
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, MESSAGE_BYTES, 2)
        except OSError:
            os._exit(1)
        if not message:
            os._exit(0)
        assert_single_threaded()
        try:
            pid = _fork_worker(control, message.decode(errors="replace"), fds, listen_fd)
            answer = f"PID {pid}"
        except (ValueError, OSError) as exc:
            pid, answer = None, f"ERROR {exc}"
        if pid == 0:
            return
        for fd in fds:
            os.close(fd)
        control.sendall(answer.encode())
