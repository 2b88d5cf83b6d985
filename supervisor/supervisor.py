"""The supervisor actor: starts the children in order, restarts crashed or hung ones, escalates.

pykka has no supervision of its own; this is one_for_one with restart intensity.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pykka

from messagepusher.supervisor.actor import PING, Crashed
from messagepusher.supervisor.config import ChildSpec
from messagepusher.supervisor.models import SupervisorEvent
from messagepusher.supervisor.restart_policy import RestartPolicy, is_hung

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

log = logging.getLogger(__name__)

CHILD_CLASSES = {
    "ingest": "messagepusher.actors.ingest:IngestActor",
    "dispatcher": "messagepusher.actors.dispatcher:DispatcherActor",
    "schedules": "messagepusher.actors.schedule_runner:ScheduleRunnerActor",
    "channel_pool": "messagepusher.actors.channel_pool:ChannelPoolActor",
    "ai_pool": "messagepusher.actors.ai_pool:AIPoolActor",
    "fetcher": "messagepusher.actors.fetcher:FetcherActor",
    "janitor": "messagepusher.actors.janitor:JanitorActor",
    "monitor": "messagepusher.actors.monitor:MonitorActor",
}


def child_class(name: str) -> type:
    module, _, attr = CHILD_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass
class RestartChild:
    name: str
    incarnation: int


@dataclass
class ReportHung:
    """Tell (from the monitor): this incarnation of a child does not answer.

    A report about an incarnation that was already replaced is ignored.
    """

    name: str
    detail: str = "did not answer a liveness ping in time"
    incarnation: int | None = None


class CheckLiveness:
    """Tell (from the supervisor's own timer): ping every child, judge the last round."""


class Status:
    """Ask: every child's state, restarts and last error."""


class StopChildren:
    """Ask: stop every child in reverse start order, each within its shutdown timeout."""


@dataclass
class ChildState:
    spec: ChildSpec
    ref: pykka.ActorRef | None = None
    incarnation: int = 0
    state: str = "stopped"
    restarts: int = 0
    last_error: str | None = None
    started_at: float | None = None
    ping: pykka.Future | None = None
    ping_sent_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class SupervisorActor(pykka.ThreadingActor):
    """Owns the children. Every method runs in the supervisor's thread.

    An exception here is a bug in supervision itself: it is logged by pykka and the
    runtime, seeing the supervisor dead, escalates (the process exits non-zero).
    """

    use_daemon_thread = True

    def __init__(self, runtime: Runtime, now=time.monotonic):
        super().__init__()
        self.runtime = runtime
        sup = runtime.settings.supervisor
        self.now = now
        self.policy = RestartPolicy(
            sup.max_restarts,
            sup.within_seconds,
            sup.backoff_initial_seconds,
            sup.backoff_max_seconds,
            now,
        )
        self.children = {spec.name: ChildState(spec) for spec in sup.children}
        self.ping_timeout = sup.ping_timeout_seconds
        self.check_interval = min(1.0, self.ping_timeout / 2)
        self._timers: set[threading.Timer] = set()
        self._stopping = False
        self.given_up = False

    # --- life ------------------------------------------------------------------------

    def on_start(self) -> None:
        for child in self.children.values():
            self._start_child(child)
        self._after(self.check_interval, CheckLiveness())

    def on_stop(self) -> None:
        for timer in list(self._timers):
            timer.cancel()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Crashed):
            return self._on_crash(message.name, message.incarnation, "crash", message.error)
        if isinstance(message, RestartChild):
            child = self.children.get(message.name)
            if child and child.incarnation == message.incarnation and not self._stopping:
                self._start_child(child, restart=True)
            return None
        if isinstance(message, CheckLiveness):
            self._check_liveness()
            if not self._stopping:
                self._after(self.check_interval, CheckLiveness())
            return None
        if isinstance(message, ReportHung):
            child = self.children.get(message.name)
            stale = (
                message.incarnation is not None
                and child is not None
                and message.incarnation != child.incarnation
            )
            if child and child.state == "running" and not stale:
                self._on_crash(message.name, child.incarnation, "hung", message.detail)
            return None
        if isinstance(message, Status):
            return self.status()
        if isinstance(message, StopChildren):
            return self._stop_children()
        return None

    # --- children ----------------------------------------------------------------------

    def _start_child(self, child: ChildState, restart: bool = False) -> None:
        child.incarnation += 1
        cls = child_class(child.spec.name)
        child.ref = cls.start(self.runtime, child.incarnation)
        child.state = "running"
        child.started_at = time.time()
        child.ping = None
        self.runtime.register(child.spec.name, child.ref)
        event = "restart" if restart else "start"
        self._record(child.spec.name, event, f"incarnation {child.incarnation}")
        log.info("supervisor: %s %sed (incarnation %d)", child.spec.name, event, child.incarnation)

    def _on_crash(self, name: str, incarnation: int, kind: str, error: str) -> None:
        child = self.children.get(name)
        if child is None or child.incarnation != incarnation or self._stopping:
            return
        child.last_error = error
        child.state = "restarting"
        self.runtime.unregister(name)
        self._record(name, kind, error)
        log.error("supervisor: %s %s: %s", name, "crashed" if kind == "crash" else "is hung", error)
        if kind == "hung" and child.ref is not None:
            child.ref.stop(block=False)  # queued behind the hang: it stops if it ever wakes
        if child.spec.restart == "temporary" or (
            child.spec.restart == "transient" and kind == "normal"
        ):
            child.state = "stopped"
            return
        delay = self.policy.record(name)
        if delay is None:
            sup = self.runtime.settings.supervisor
            reason = (
                f"{name} failed and restart intensity is exceeded "
                f"({sup.max_restarts} restarts within {sup.within_seconds:g}s); giving up"
            )
            self._record(name, "give_up", reason)
            log.critical("supervisor: %s", reason)
            child.state = "given_up"
            self.given_up = True
            self.runtime.escalate(reason)
            return
        child.restarts += 1
        self.runtime.count_restart(name)
        self._after(delay, RestartChild(name, child.incarnation))

    def _check_liveness(self) -> None:
        now = self.now()
        for child in self.children.values():
            if child.state != "running" or child.ref is None:
                continue
            if child.ping is not None:
                try:
                    child.ping.get(timeout=0)
                except pykka.Timeout:
                    stalled = self.runtime.stalled_for(child.spec.name, child.incarnation)
                    # A ping queued behind a backlog of work is late, not a sign of a hang: hung
                    # means no message started or finished for the whole timeout.
                    if is_hung(now - child.ping_sent_at, stalled, self.ping_timeout):
                        self._on_crash(
                            child.spec.name,
                            child.incarnation,
                            "hung",
                            f"stuck in one message for {min(stalled, now - child.ping_sent_at):.1f}s; "
                            f"no answer to a liveness ping within {self.ping_timeout:g}s",
                        )
                    continue
                except pykka.ActorDeadError:
                    continue
                self.policy.healthy(child.spec.name)
            try:
                child.ping = child.ref.ask(PING, block=False)
                child.ping_sent_at = now
            except pykka.ActorDeadError:
                child.ping = None

    def _stop_children(self) -> dict[str, bool]:
        self._stopping = True
        stopped = {}
        for name in reversed(list(self.children)):
            child = self.children[name]
            if child.ref is None or not child.ref.is_alive():
                continue
            try:
                stopped[name] = bool(
                    child.ref.stop(block=True, timeout=child.spec.shutdown_timeout_seconds)
                )
            except pykka.Timeout:
                stopped[name] = False
                log.warning(
                    "supervisor: %s did not stop within %gs",
                    name,
                    child.spec.shutdown_timeout_seconds,
                )
            child.state = "stopped"
            self.runtime.unregister(name)
        return stopped

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "state": c.state,
                "alive": bool(c.ref and c.ref.is_alive()),
                "incarnation": c.incarnation,
                "restarts": c.restarts,
                "last_error": c.last_error,
                "started_at": c.started_at,
                "restart_policy": c.spec.restart,
            }
            for name, c in self.children.items()
        }

    # --- helpers -------------------------------------------------------------------------

    def _after(self, delay: float, message: Any) -> None:
        if delay <= 0:
            self.actor_ref.tell(message)
            return
        timer = threading.Timer(delay, self._deliver, args=(message,))
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _deliver(self, message: Any) -> None:
        self._timers = {
            t for t in self._timers if t.is_alive() and t is not threading.current_thread()
        }
        if self.actor_ref.is_alive():
            self.actor_ref.tell(message)

    def _record(self, actor: str, event: str, detail: str) -> None:
        try:
            SupervisorEvent.create(
                at=time.time(),
                actor=actor,
                event=event,
                detail=detail[:2000],
                node=self.runtime.node_id,
            )
        except Exception:  # noqa: BLE001 - a full disk must not stop supervision
            log.exception("supervisor: could not record %s %s", actor, event)
