"""The supervisor actor: starts the children in order, restarts crashed or hung ones, escalates.

pykka has no supervision of its own; this is one_for_one with restart intensity. Whether a
child is hung is the monitor's judgement (actors/monitor.py, the one owner of liveness): it
tells `ReportHung` and `ChildAnswered`; the supervisor only acts on them.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pykka

from messagepusher.supervisor.actor import Crashed
from messagepusher.supervisor.config import ChildSpec
from messagepusher.supervisor.models import SupervisorEvent
from messagepusher.supervisor.restart_policy import RestartPolicy
from messagepusher.supervisor.ticker import ActorTimers

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


def record_event(runtime: Runtime, recorder: str, actor: str, event: str, detail: str) -> None:
    """Keep a supervisor event (start, exit, crash, restart, give-up) in the database, in the
    caller's thread. Never raises: a full disk must not stop supervision; `recorder` names who
    could not record it in the log line."""
    try:
        SupervisorEvent.create(
            at=runtime.clock.now(),
            actor=actor,
            event=event,
            detail=detail[:2000],
            node=runtime.node_id,
        )
    except Exception:  # noqa: BLE001 - a full disk must not stop supervision
        log.exception("%s: could not record %s %s", recorder, actor, event)


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


@dataclass
class ChildAnswered:
    """Tell (from the monitor): this incarnation answered a liveness ping, so it works.

    Its next crash starts restart back-off afresh. Sent once per incarnation.
    """

    name: str
    incarnation: int


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
    extra: dict[str, Any] = field(default_factory=dict)


class SupervisorActor(pykka.ThreadingActor):
    """Owns the children. Every method runs in the supervisor's thread, timed restarts too:
    a back-off delay is a `RestartChild` told by the process ticker (supervisor/ticker.py).

    An exception here is a bug in supervision itself: it is logged by pykka and the
    runtime, seeing the supervisor dead, escalates (the process exits non-zero).
    """

    use_daemon_thread = True

    def __init__(self, runtime: Runtime):
        super().__init__()
        self.runtime = runtime
        sup = runtime.settings.supervisor
        self.policy = RestartPolicy.from_settings(sup, runtime.clock.monotonic)
        self.children = {spec.name: ChildState(spec) for spec in sup.children}
        self.timers = ActorTimers(runtime.ticker, self.actor_ref)
        self._stopping = False
        self.given_up = False

    # --- life ------------------------------------------------------------------------

    def on_start(self) -> None:
        """Supervisor thread: start every child in order. Raising stops the supervisor (escalation)."""
        for child in self.children.values():
            self._start_child(child)

    def on_stop(self) -> None:
        """Supervisor thread: drop pending restarts. Raising is logged by pykka."""
        self.timers.cancel_all()

    def on_receive(self, message: Any) -> Any:
        """Supervisor thread: crashes, hang reports, timed restarts, status and stop asks.

        Raising from a tell stops the supervisor (the runtime escalates); from an ask the
        error goes back to the asker.
        """
        if isinstance(message, Crashed):
            return self._on_crash(message.name, message.incarnation, "crash", message.error)
        if isinstance(message, RestartChild):
            child = self.children.get(message.name)
            if child and child.incarnation == message.incarnation and not self._stopping:
                self._start_child(child, restart=True)
            return None
        if isinstance(message, ChildAnswered):
            child = self.children.get(message.name)
            if child is not None and child.incarnation == message.incarnation:
                self.policy.healthy(message.name)
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
        """Supervisor thread: start the next incarnation and register it by name.

        Raising (a child class that cannot be imported) stops the supervisor: escalation.
        """
        child.incarnation += 1
        cls = child_class(child.spec.name)
        child.ref = cls.start(self.runtime, child.incarnation)
        child.state = "running"
        child.started_at = self.runtime.clock.now()
        self.runtime.register(child.spec.name, child.ref)
        event = "restart" if restart else "start"
        self._record(child.spec.name, event, f"incarnation {child.incarnation}")
        log.info("supervisor: %s %sed (incarnation %d)", child.spec.name, event, child.incarnation)

    def _on_crash(self, name: str, incarnation: int, kind: str, error: str) -> None:
        """Supervisor thread: record a crash or hang of the current incarnation, then restart it
        after its back-off (a `RestartChild` on the ticker) or give up and escalate."""
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
            reason = self.policy.give_up_reason(name)
            self._record(name, "give_up", reason)
            log.critical("supervisor: %s", reason)
            child.state = "given_up"
            self.given_up = True
            self.runtime.escalate(reason)
            return
        child.restarts += 1
        self.runtime.count_restart(name)
        self.timers.after(f"restart {name}", delay, RestartChild(name, child.incarnation))

    def _stop_children(self) -> dict[str, bool]:
        """Supervisor thread (the StopChildren ask): stop children in reverse start order,
        each within its shutdown timeout; {name: stopped in time}. Raising goes to the asker."""
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
        """Supervisor thread (the Status ask): every child's state, restarts and last error."""
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

    def _record(self, actor: str, event: str, detail: str) -> None:
        """Supervisor thread: keep a start, crash or restart in the database; never raises."""
        record_event(self.runtime, "supervisor", actor, event, detail)
