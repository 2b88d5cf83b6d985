"""The root process supervisor: binds the port once, runs N worker processes on it, replaces them.

Like gunicorn's arbiter: each worker runs the whole actor tree; the root alone talks to systemd.
Workers are forked from a zygote that has already imported the service (supervisor/zygote.py),
so a replacement skips the import; without a zygote they start as fresh interpreters.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from messagepusher.supervisor import sd_notify
from messagepusher.supervisor.metrics import MULTIPROC_ENV, forget_process, fresh_multiprocess_dir
from messagepusher.supervisor.nodes import NodeRegistry, remove_dead_process
from messagepusher.supervisor.restart_policy import RestartPolicy
from messagepusher.supervisor.runtime import EXIT_ESCALATED, Runtime
from messagepusher.supervisor.supervisor import record_event
from messagepusher.supervisor.worker_link import WORKER_ENV, WorkerSpec
from messagepusher.supervisor.zygote import ForkedWorker, Zygote, ZygoteError, become_subreaper

log = logging.getLogger(__name__)

LOOP_SECONDS = 0.1
# After the grace period, a worker that has not stopped is killed this much later.
KILL_AFTER_GRACE_SECONDS = 5.0
LISTEN_BACKLOG = 1024
# How long a fork request may take before the zygote counts as broken.
FORK_ANSWER_SECONDS = 5.0
ZYGOTE = "zygote"


# --- pure decisions ----------------------------------------------------------------------------


def worker_count(processes: int, cpu_count: int | None) -> int:
    """server.processes as a number of workers: 0 means one per CPU core (at least one)."""
    return processes if processes > 0 else max(1, cpu_count or 1)


def describe_exit(returncode: int) -> str:
    """ "exit code 3" or "killed by signal SIGKILL" (Popen gives -N for signal N)."""
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Slot:
    """One worker place: its current process and what the root knows of it (root's main thread)."""

    index: int
    starts: int = 0
    proc: subprocess.Popen | ForkedWorker | None = None
    beat_fd: int | None = None
    life_fd: int | None = None
    started: float = 0.0
    last_beat: float = 0.0
    ready: bool = False
    status: str = ""
    last_watchdog: float | None = None
    ready_at: float = 0.0
    restart_at: float | None = None
    pending: bytes = b""
    state: str = "stopped"  # starting, running, restarting, hung, given_up, stopped

    @property
    def name(self) -> str:
        return f"worker-{self.index}"

    def take_lines(self, data: bytes, now: float) -> list[str]:
        """Account for bytes read from the beat pipe; returns the whole lines among them."""
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        out = []
        for raw in lines:
            line = raw.decode(errors="replace")
            out.append(line)
            # Only the main thread's lines count as beats (BEAT, and READY=1 before its loop
            # starts): other threads, the monitor's watchdog pings, go on while it is stuck.
            if line == "BEAT":
                self.last_beat = now
            elif line == "READY=1":
                self.ready = True
                self.state = "running"
                self.last_beat = self.ready_at = now
            elif line.startswith("STATUS="):
                self.status = line[len("STATUS=") :]
            elif line == "WATCHDOG=1":
                self.last_watchdog = now
        return out

    def overdue(self, now: float, heartbeat_timeout: float, start_timeout: float) -> str | None:
        """Why this running process should be replaced, or None while it is well.

        Before READY=1 it has `start_timeout` to get there; after, each beat must follow the
        last within `heartbeat_timeout`.
        """
        if self.proc is None or self.state not in ("starting", "running"):
            return None
        if not self.ready:
            if now - self.started > start_timeout:
                return f"not ready {start_timeout:g}s after its start"
            return None
        if now - self.last_beat > heartbeat_timeout:
            return f"no heartbeat for {now - self.last_beat:.1f}s (limit {heartbeat_timeout:g}s)"
        return None

    def healthy(self, now: float, heartbeat_timeout: float, watchdog: float | None) -> bool:
        """Ready, beating, its monitor not reporting "not ready", its watchdog pings current.

        A worker just ready has two watchdog periods for its monitor's first ping: a forked
        worker is ready before its monitor has pinged once.
        """
        if self.proc is None or not self.ready or self.state != "running":
            return False
        if now - self.last_beat > heartbeat_timeout or self.status.startswith("not ready"):
            return False
        if watchdog is not None:
            pinged = self.ready_at if self.last_watchdog is None else self.last_watchdog
            return now - pinged <= 2 * watchdog
        return True


# --- the root ----------------------------------------------------------------------------------


class RootSupervisor:
    """Runs in the root's main thread; signal handlers just set flags the loop reads.

    The registry's thread reads the slots' states for the root's node row (plain fields, a
    snapshot that may be one loop round old). An exception in the loop is a bug: it ends the
    root with a traceback, the workers see their life pipe close and stop by themselves.
    """

    def __init__(self, runtime: Runtime, count: int, main_script: Path, config_path: str | None):
        self.runtime = runtime
        self.settings = runtime.settings
        self.clock = runtime.clock
        self.main_script = main_script
        self.config_path = config_path
        sup = self.settings.supervisor
        self.policy = RestartPolicy.from_settings(sup, self.clock.monotonic)
        self.slots = [Slot(i) for i in range(1, count + 1)]
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.metrics_dir: Path | None = None
        self.registry = NodeRegistry(
            runtime, "root", 0, lambda: {s.name: self._slot_state(s) for s in self.slots}
        )
        self.stop_signal: str | None = None
        self.reload_requested = False
        self.exit_code = 0
        self.announced = False
        self.last_status = ""
        self.last_watchdog = float("-inf")
        self.zygote: Zygote | None = None
        self.zygote_policy = RestartPolicy.from_settings(sup, self.clock.monotonic)
        self.zygote_restart_at: float | None = None
        self.zygote_starts = 0

    # --- start ---------------------------------------------------------------------------------

    def bind(self) -> int:
        """Bind and listen once; every worker inherits this socket. Returns the port.

        Raises OSError (port in use, address not available); the caller turns it into one line.
        """
        server = self.settings.server
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        self.listener = socket.create_server(
            (server.host, server.port), family=family, backlog=LISTEN_BACKLOG
        )
        return self.listener.getsockname()[1]

    def _worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[MULTIPROC_ENV] = str(self.metrics_dir)
        # Only the root talks to systemd; a worker's monitor still paces itself by the watchdog.
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_PID", None)
        return env

    def _command(self) -> list[str]:
        command = [sys.executable, str(self.main_script)]
        if self.config_path:
            command += ["--config", self.config_path]
        return [*command, "serve"]

    def _start_zygote(self) -> None:
        """Start a zygote (fork+exec: safe beside the root's threads); it says READY later.

        A zygote that cannot start is recorded like one that died."""
        self.zygote_starts += 1
        self.zygote_restart_at = None
        event = "start" if self.zygote_starts == 1 else "restart"
        try:
            self.zygote = Zygote(self._command(), self._worker_env(), self.listener.fileno())
        except OSError as exc:
            self._record_actor(ZYGOTE, "exit", f"could not start: {exc}")
            self._zygote_gone(self.clock.monotonic())
            return
        self._record_actor(ZYGOTE, event, f"pid {self.zygote.pid}, start {self.zygote_starts}")
        log.info("root: zygote %sed (pid %d)", event, self.zygote.pid)

    def _zygote_gone(self, now: float) -> None:
        """The zygote died or broke: restart it with back-off, or past the restart intensity
        start every later worker as a fresh interpreter."""
        self.zygote = None
        if self.stop_signal is not None:
            return
        delay = self.zygote_policy.record(ZYGOTE)
        if delay is None:
            reason = "the zygote failed too often; workers start as fresh interpreters from now on"
            self._record_actor(ZYGOTE, "give_up_zygote", reason)
            log.error("root: %s", reason)
            return
        self.zygote_restart_at = now + delay

    def _watch_zygote(self, now: float) -> None:
        zygote = self.zygote
        if zygote is not None and zygote.alive():
            try:
                zygote.check_ready()
            except ZygoteError as exc:
                log.error("root: %s; killing it", exc)
                zygote.proc.kill()
            return
        if zygote is not None:
            code = zygote.stop()
            forget_process(zygote.pid, self.metrics_dir)
            detail = f"pid {zygote.pid} {describe_exit(code)}"
            self._record_actor(ZYGOTE, "exit", detail)
            log.error("root: the zygote exited: %s", detail)
            self._zygote_gone(now)
        elif self.zygote_restart_at is not None and now >= self.zygote_restart_at:
            self._start_zygote()

    def _start_process(self, slot: Slot, beat_write: int, life_read: int) -> str:
        """Fork the slot's worker from the zygote when one is ready, else start a fresh
        interpreter; says which (for the start event). The caller closes both fds."""
        zygote = self.zygote
        if zygote is not None and zygote.ready:
            try:
                slot.proc = zygote.fork(
                    slot.index, slot.starts, beat_write, life_read, FORK_ANSWER_SECONDS
                )
                return "forked from the zygote"
            except ZygoteError as exc:
                log.error("root: %s; killing it, starting %s afresh", exc, slot.name)
                zygote.proc.kill()
        spec = WorkerSpec(slot.index, slot.starts, self.listener.fileno(), beat_write, life_read)
        env = self._worker_env()
        env[WORKER_ENV] = spec.encode()
        slot.proc = subprocess.Popen(
            self._command(),
            env=env,
            pass_fds=(self.listener.fileno(), beat_write, life_read),
        )
        return "fresh interpreter"

    def _spawn(self, slot: Slot) -> None:
        beat_read, beat_write = os.pipe()
        life_read, life_write = os.pipe()
        slot.starts += 1
        try:
            how = self._start_process(slot, beat_write, life_read)
        finally:
            os.close(beat_write)
            os.close(life_read)
        os.set_blocking(beat_read, False)
        slot.beat_fd, slot.life_fd = beat_read, life_write
        self.selector.register(beat_read, selectors.EVENT_READ, slot)
        now = self.clock.monotonic()
        slot.started = slot.last_beat = now
        slot.ready, slot.status, slot.last_watchdog, slot.pending = False, "", None, b""
        slot.restart_at = None
        slot.state = "starting"
        event = "start" if slot.starts == 1 else "restart"
        self._record(slot, event, f"pid {slot.proc.pid}, start {slot.starts}, {how}")
        log.info("root: %s %sed (pid %d, %s)", slot.name, event, slot.proc.pid, how)

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> int:
        """Start every worker and supervise them until a stop signal or escalation; the exit code."""
        self.metrics_dir = fresh_multiprocess_dir(self.runtime.data_dir)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)
        if become_subreaper():
            self._start_zygote()
            self._await_zygote(self.settings.server.worker_start_seconds)
        else:
            log.warning("root: cannot adopt forked workers here; they start as fresh interpreters")
        for slot in self.slots:
            self._spawn(slot)
        self.registry.start()
        while self.stop_signal is None:
            self._read_beats(LOOP_SECONDS)
            now = self.clock.monotonic()
            self._reap(now)
            if self.stop_signal is not None:
                break
            self._watch_zygote(now)
            self._judge(now)
            self._restart_due(now)
            self._tell_systemd(now)
            if self.reload_requested:
                self.reload_requested = False
                self._signal_all(signal.SIGHUP)
                log.info("root: SIGHUP passed to every worker")
        return self._stop_all()

    def _await_zygote(self, timeout: float) -> None:
        """Before the first workers: wait for the zygote's READY (it is importing the service)."""
        if self.zygote is None:
            return
        try:
            if self.zygote.check_ready(timeout):
                return
            log.error("root: the zygote is not ready after %gs; killing it", timeout)
        except ZygoteError as exc:
            log.error("root: %s; killing it", exc)
        self.zygote.proc.kill()
        self._watch_zygote(self.clock.monotonic())

    def _on_stop_signal(self, signum: int, _frame) -> None:
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(signum).name

    def _on_reload_signal(self, _signum: int, _frame) -> None:
        self.reload_requested = True

    def _read_beats(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            slot: Slot = key.data
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not data:  # the worker closed its end: it is exiting; _reap collects it
                self._unwatch(slot)
                continue
            slot.take_lines(data, self.clock.monotonic())

    def _unwatch(self, slot: Slot) -> None:
        if slot.beat_fd is not None:
            self.selector.unregister(slot.beat_fd)
            os.close(slot.beat_fd)
            slot.beat_fd = None

    def _close_slot(self, slot: Slot) -> None:
        self._unwatch(slot)
        if slot.life_fd is not None:
            os.close(slot.life_fd)
            slot.life_fd = None

    def _reap(self, now: float) -> None:
        for slot in self.slots:
            if slot.proc is None or slot.proc.poll() is None:
                continue
            code, pid = slot.proc.returncode, slot.proc.pid
            self._close_slot(slot)
            slot.proc = None
            forget_process(pid, self.metrics_dir)
            remove_dead_process(pid)
            detail = f"pid {pid} {describe_exit(code)}"
            self._record(slot, "exit", detail)
            if self.stop_signal is not None:
                slot.state = "stopped"
                continue
            log.error("root: %s exited: %s", slot.name, detail)
            delay = self.policy.record(slot.name)
            if delay is None:
                self._give_up(slot)
                return
            slot.state = "restarting"
            slot.restart_at = now + delay

    def _give_up(self, slot: Slot) -> None:
        reason = self.policy.give_up_reason(slot.name, "the process restart intensity")
        self._record(slot, "give_up", reason)
        log.critical("root: %s", reason)
        slot.state = "given_up"
        self.exit_code = EXIT_ESCALATED
        self.stop_signal = "escalation"

    def _judge(self, now: float) -> None:
        server = self.settings.server
        for slot in self.slots:
            if slot.ready and slot.state == "running" and now - slot.last_beat < 1.0:
                self.policy.healthy(slot.name)
            why = slot.overdue(now, server.heartbeat_timeout_seconds, server.worker_start_seconds)
            if why is None:
                continue
            slot.state = "hung"
            self._record(slot, "hung", f"pid {slot.proc.pid}: {why}; killing it")
            log.error("root: %s (pid %d) is hung: %s; killing it", slot.name, slot.proc.pid, why)
            slot.proc.kill()

    def _restart_due(self, now: float) -> None:
        for slot in self.slots:
            if slot.proc is None and slot.restart_at is not None and now >= slot.restart_at:
                self._spawn(slot)

    def _tell_systemd(self, now: float) -> None:
        """READY=1 once every worker is ready; WATCHDOG=1 only while every one is healthy."""
        watchdog = sd_notify.watchdog_interval()
        timeout = self.settings.server.heartbeat_timeout_seconds
        if not self.announced and all(s.ready and s.proc is not None for s in self.slots):
            self.announced = True
            server = self.settings.server
            sd_notify.notify(
                f"READY=1\nSTATUS=listening on {server.host}:{self.port} "
                f"with {len(self.slots)} worker processes"
            )
            log.info(
                "listening on http://%s:%d (%d worker processes, data in %s)",
                server.host,
                self.port,
                len(self.slots),
                self.runtime.data_dir.resolve(),
            )
        healthy = [s.name for s in self.slots if s.healthy(now, timeout, watchdog)]
        unwell = sorted({s.name for s in self.slots} - set(healthy))
        status = "ready" if not unwell else "not ready: " + ", ".join(unwell)
        if self.announced and status != self.last_status:
            sd_notify.notify(f"STATUS={status}")
            self.last_status = status
        if watchdog is not None and not unwell and now - self.last_watchdog >= watchdog:
            sd_notify.notify("WATCHDOG=1")
            self.last_watchdog = now

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1] if self.listener is not None else 0

    def _slot_state(self, slot: Slot) -> str:
        return f"{slot.state} (pid {slot.proc.pid})" if slot.proc is not None else slot.state

    # --- stop ------------------------------------------------------------------------------------

    def _signal_all(self, signum: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signum)

    def _stop_all(self) -> int:
        """Drain every worker (SIGTERM: each answers what is in flight and releases its leases),
        kill what outlives the grace period, leave the registry; the process's exit code."""
        log.info("root: %s: stopping %d workers", self.stop_signal, len(self.slots))
        sd_notify.notify("STOPPING=1")
        self._signal_all(signal.SIGTERM)
        if self.zygote is not None:
            forget_process(self.zygote.pid, self.metrics_dir)
            self._record_actor(
                ZYGOTE, "exit", f"pid {self.zygote.pid} {describe_exit(self.zygote.stop())}"
            )
            self.zygote = None
        if self.listener is not None:
            self.listener.close()  # the workers hold their own copies until they exit
        deadline = (
            self.clock.monotonic() + self.settings.shutdown_grace_seconds + KILL_AFTER_GRACE_SECONDS
        )
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(max(0.0, deadline - self.clock.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("root: %s did not stop in time; killing it", slot.name)
                slot.proc.kill()
                slot.proc.wait()
            self._record(slot, "exit", f"pid {slot.proc.pid} {describe_exit(slot.proc.returncode)}")
            forget_process(slot.proc.pid, self.metrics_dir)
            if slot.proc.returncode not in (0, None) and self.exit_code == 0:
                log.warning(
                    "root: %s ended with %s", slot.name, describe_exit(slot.proc.returncode)
                )
            self._close_slot(slot)
            slot.proc = None
        self.registry.stop()
        return self.exit_code

    def _record(self, slot: Slot, event: str, detail: str) -> None:
        self._record_actor(slot.name, event, detail)

    def _record_actor(self, actor: str, event: str, detail: str) -> None:
        record_event(self.runtime, "root", actor, event, detail)


def run_root(runtime: Runtime, config_path: str | None, main_script: Path) -> int:
    """Main thread of `serve` with server.processes other than 1; returns the exit code.

    The caller has opened and migrated the database (once, before any worker starts).
    """
    count = worker_count(runtime.settings.server.processes, os.cpu_count())
    root = RootSupervisor(runtime, count, main_script, config_path)
    try:
        root.bind()
    except OSError as exc:
        server = runtime.settings.server
        print(
            f"error: cannot listen on {server.host}:{server.port}: {exc.strerror or exc}; "
            "choose another server.port or stop what uses it",
            file=sys.stderr,
        )
        return 1
    log.info("root: starting %d worker processes on port %d", count, root.port)
    return root.run()
