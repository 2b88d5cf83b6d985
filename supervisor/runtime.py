"""The running service: database, mailbox, supervisor and HTTP server, and their orderly stop.

One Runtime per process; actors reach each other only through it (by name), so a
restarted actor is found under its old name. It is the bottom layer: it imports nothing
from `messagepusher.actors` or `messagepusher.http`; main.py and http/app.py plug their
parts in (the ingest client, the HTTP pieces, the hooks run after a restore).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pykka

from messagepusher.supervisor import sd_notify
from messagepusher.supervisor.actor import WAKE
from messagepusher.supervisor.clock import Clock, SystemClock
from messagepusher.supervisor.config import Settings
from messagepusher.supervisor.db import open_database
from messagepusher.supervisor.faults import FaultInjector
from messagepusher.supervisor.mailbox import NODE_ID, Mailbox
from messagepusher.supervisor.metrics import Metrics
from messagepusher.supervisor.migrations import migrate
from messagepusher.supervisor.retry import RetryPolicy
from messagepusher.supervisor.ticker import Ticker

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime_config import RuntimeConfig
    from messagepusher.supervisor.scheduler import JobScheduler

log = logging.getLogger(__name__)

EXIT_ESCALATED = 70
T = TypeVar("T")


class Runtime:
    """Process-wide wiring. Methods are thread-safe unless they say otherwise.

    Every attribute is declared here. Those typed `Any` belong to upper layers, which set
    them when they start: `ingest` (main.py: actors/ingest.IngestClient, what HTTP handlers
    and actors call to accept a message), and the HTTP pieces that http/app.py builds and
    other resources read back (`key_authenticator`, `auth`, `routes`, `audit`, `throttle`,
    `stream_slots`).
    """

    def __init__(
        self, settings: Settings, config_path: str | None = None, clock: Clock | None = None
    ):
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        # The one timer thread: actors' timed messages (supervisor/ticker.py).
        self.ticker = Ticker(self.clock)
        self.config_path = config_path
        self.node_id = NODE_ID
        self.data_dir = Path(settings.data_dir)
        self.refs: dict[str, pykka.ActorRef] = {}
        self.supervisor_ref: pykka.ActorRef | None = None
        self.shutdown_requested = threading.Event()
        self.exit_code = 0
        self.exit_reason = ""
        self.restart_counts: Counter[str] = Counter()
        self.accepting = True
        self.started_at = self.clock.now()
        self._faults: dict[str, FaultInjector] = {}
        self._lock = threading.Lock()
        self.db = None
        self.mailbox: Mailbox | None = None
        self.secretbox: Any = None  # the accounts layer's SecretBox (open_accounts)
        self.http_server: Any = None
        self.scheduler: JobScheduler | None = None
        self.runtime_config: RuntimeConfig | None = None
        # Set by the monitor (the owner of liveness): actors whose liveness ping is overdue,
        # and for how long (seconds); and when it last checked (clock.monotonic()).
        self.unresponsive: dict[str, float] = {}
        self.liveness_checked_at: float | None = None
        # Written by each actor thread as it starts and finishes a message: (incarnation, monotonic).
        self.progress: dict[str, tuple[int, float]] = {}
        self.metrics = Metrics()
        self.ingest: Any = None
        self.key_authenticator: Any = None
        self.auth: Any = None
        self.routes: list[Any] = []
        self.audit: Any = None
        self.throttle: Callable[..., Any] | None = None
        self.stream_slots: Any = None
        # Run after a restore replaced the database, before the actors start again.
        self._after_restore: list[Callable[[], None]] = []

    # --- start and stop (main thread) ----------------------------------------------------

    def open_storage(self) -> None:
        """Open and migrate the database and its mailbox (accounts.users.open_accounts follows)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = open_database(self.settings.database_url, self.settings.database.busy_timeout_ms)
        self.db.connect(reuse_if_open=True)
        if self.db.lock_times is not None:
            self.db.lock_times.observer = self.metrics.write_lock_hold
        migrate(self.db)
        self.mailbox = Mailbox(self.db, RetryPolicy.from_settings(self.settings.retry))

    def start_operations(self) -> None:
        """Main thread, before the actors: apply the stored run-time configuration, start the scheduler."""
        from messagepusher.supervisor.runtime_config import RuntimeConfig
        from messagepusher.supervisor.scheduler import JobScheduler

        self.runtime_config = RuntimeConfig(self)
        self.runtime_config.apply_stored()
        self.runtime_config.start_watching()
        self.scheduler = JobScheduler(self)
        self.scheduler.start()

    def start_actors(self) -> None:
        from messagepusher.supervisor.supervisor import SupervisorActor

        self.supervisor_ref = SupervisorActor.start(self)

    def wait_for_actors(self, timeout: float) -> bool:
        """Block the caller until every child runs (True) or `timeout` passes (False)."""
        deadline = self.clock.monotonic() + timeout
        while self.clock.monotonic() < deadline:
            try:
                status = self.supervisor_status()
            except (pykka.Timeout, pykka.ActorDeadError):
                status = {}
            if status and all(c["state"] == "running" and c["alive"] for c in status.values()):
                return True
            time.sleep(0.02)
        return False

    def stop_actors(self, grace_seconds: float) -> None:
        """Stop every child within the grace period (they release their leases), then the supervisor.

        Runs in the caller's thread (main at stop, an HTTP worker for a restore); a child that
        does not stop in time is logged and left behind.
        """
        if self.supervisor_ref is not None and self.supervisor_ref.is_alive():
            from messagepusher.supervisor.supervisor import StopChildren

            try:
                self.supervisor_ref.ask(StopChildren(), timeout=grace_seconds + 5)
            except pykka.Timeout:
                log.warning("children did not stop within %gs", grace_seconds)
            self.supervisor_ref.stop(block=True, timeout=5)

    def stop(self, grace_seconds: float) -> None:
        """Stop taking requests, let children finish within the grace period, release leases."""
        self.accepting = False
        sd_notify.notify("STOPPING=1")
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.runtime_config is not None:
            self.runtime_config.stop_watching()
        if self.http_server is not None:
            self.http_server.stop()
        if self.audit is not None:
            self.audit.close()
        self.stop_actors(grace_seconds)
        self.ticker.stop()
        if self.db is not None:
            self.db.close()

    def on_restore(self, hook: Callable[[], None]) -> None:
        """Run `hook` after every restore, before the actors start again (e.g. drop a cache of
        rows the backup may not have). Called at start by upper layers; a hook that raises
        is logged and the others still run."""
        self._after_restore.append(hook)

    def while_stopped(self, reason: str, work: Callable[[], T]) -> T:
        """Run `work` with the service paused: for an online restore. Caller's thread.

        New work is refused (503), the scheduler pauses, every actor stops and releases its
        leases, and database writes of this process are held while `work` runs. Then the
        schema is migrated, the stored run-time configuration re-applied, the `on_restore`
        hooks run, and the actors and scheduler start again. The systemd watchdog is fed by
        a heartbeat meanwhile (the monitor is stopped) and STATUS= says `reason`. Whatever
        `work` raises is raised once the service runs again.
        """
        stop_heartbeat = threading.Event()
        self.accepting = False
        threading.Thread(
            target=_heartbeat, args=(stop_heartbeat, reason), name="pause-heartbeat", daemon=True
        ).start()
        try:
            if self.scheduler is not None:
                self.scheduler.pause()
            try:
                self.stop_actors(self.settings.shutdown_grace_seconds)
                held = getattr(self.db, "writes_held", contextlib.nullcontext)
                with held():  # the audit writer waits: nothing lands while `work` runs
                    return work()
            finally:
                self._resume()
        finally:
            stop_heartbeat.set()

    def _resume(self) -> None:
        """Caller's thread, after `work` of `while_stopped`: bring the service back.

        A migration or start that raises leaves the service refusing work, and the error
        goes to the caller.
        """
        migrate(self.db)
        if self.runtime_config is not None:
            self.runtime_config.apply_stored()
        for hook in self._after_restore:
            try:
                hook()
            except Exception:  # noqa: BLE001 - one hook must not keep the service stopped
                log.exception("a hook run after the restore failed")
        self.start_actors()
        self.wait_for_actors(30.0)
        if self.scheduler is not None:
            self.scheduler.resume()
        self.accepting = True

    # --- wiring ----------------------------------------------------------------------------

    def register(self, name: str, ref: pykka.ActorRef) -> None:
        with self._lock:
            self.refs[name] = ref

    def unregister(self, name: str) -> None:
        with self._lock:
            self.refs.pop(name, None)

    def ref(self, name: str) -> pykka.ActorRef | None:
        ref = self.refs.get(name)
        return ref if ref is not None and ref.is_alive() else None

    def wake(self, name: str) -> None:
        """Tell `name` it has work; a no-op when it is down (its restart recovers the work)."""
        ref = self.ref(name)
        if ref is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(WAKE)

    def tell(self, name: str, message: Any) -> bool:
        ref = self.ref(name)
        if ref is None:
            return False
        try:
            ref.tell(message)
            return True
        except pykka.ActorDeadError:
            return False

    def ask(self, name: str, message: Any, timeout: float = 10.0) -> Any:
        """Ask an actor; raises pykka.ActorDeadError when it is down, pykka.Timeout when slow."""
        ref = self.ref(name)
        if ref is None:
            raise pykka.ActorDeadError(f"{name} is not running")
        return ref.ask(message, timeout=timeout)

    def stalled_for(self, name: str, incarnation: int, now: float | None = None) -> float:
        """Seconds since this incarnation of `name` last started or finished a message.

        A busy actor stamps often; a hung one stays stuck at the start of one message.
        An incarnation that never stamped counts as stalled since forever.
        """
        stamp = self.progress.get(name)
        if stamp is None or stamp[0] != incarnation:
            return float("inf")
        return (self.clock.monotonic() if now is None else now) - stamp[1]

    def fault_injector(self, name: str) -> FaultInjector:
        with self._lock:
            if name not in self._faults:
                self._faults[name] = FaultInjector(self.settings.faults.get(name))
            return self._faults[name]

    def shutdown_timeout(self, name: str) -> float:
        for spec in self.settings.supervisor.children:
            if spec.name == name:
                return spec.shutdown_timeout_seconds
        return 10.0

    def count_restart(self, name: str) -> None:
        self.restart_counts[name] += 1
        self.metrics.restarts.labels(name).inc()

    def metrics_accepted(self, count: int) -> None:
        if count:
            self.metrics.accepted.inc(count)

    def escalate(self, reason: str) -> None:
        """Give up: the main thread stops everything and exits non-zero (systemd restarts us)."""
        self.exit_code = EXIT_ESCALATED
        self.exit_reason = reason
        self.shutdown_requested.set()

    def supervisor_status(self, timeout: float = 2.0) -> dict[str, Any]:
        from messagepusher.supervisor.supervisor import Status

        if self.supervisor_ref is None or not self.supervisor_ref.is_alive():
            return {}
        return self.supervisor_ref.ask(Status(), timeout=timeout)

    def reload_file(self) -> None:
        """SIGHUP: re-read supervisor.yaml and apply the keys that can change at run time.

        Runs in a short-lived thread; a bad file is logged and the running settings stay.
        """
        from messagepusher.supervisor.config import ConfigError, load_settings

        try:
            fresh = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        if self.runtime_config is not None:
            self.runtime_config.apply_file(fresh)
        else:
            from messagepusher.supervisor import logs

            self.settings.logging.level = fresh.logging.level
            logs.set_level(fresh.logging.level)
        log.info("configuration reloaded from %s", self.config_path or "defaults")


def _heartbeat(stop: threading.Event, reason: str) -> None:
    """Heartbeat thread while the service is paused: the monitor that feeds the watchdog is stopped."""
    sd_notify.notify(f"STATUS={reason}")
    interval = sd_notify.watchdog_interval()
    while interval and not stop.wait(interval):
        sd_notify.notify("WATCHDOG=1")
