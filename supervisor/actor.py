"""The base of every child actor: mailbox recovery on start, wake-ups, liveness, crash reports.

`MailboxActor` is a pykka ThreadingActor; `PoolActor` adds a worker pool whose
results are written back by the actor thread in one transaction per batch.
"""

from __future__ import annotations

import abc
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pykka

from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.mailbox import Entry, owner_for
from messagepusher.supervisor.ticker import ActorTimers

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

log = logging.getLogger(__name__)


class Wake:
    """Tell: there may be due work in your mailbox."""


class Flush:
    """Tell: worker results are waiting to be written."""


class Tick:
    """Tell: periodic work, from the actor's own timer or from another actor (lease extension)."""


class Ping:
    """Ask: liveness probe; a live actor answers "pong"."""


WAKE, FLUSH, TICK, PING = Wake(), Flush(), Tick(), Ping()


@dataclass
class Resize:
    """Ask a PoolActor: run with this many workers from now on; answers the new size."""

    workers: int


class PoolInfo:
    """Ask a PoolActor: {"workers", "max_workers", "in_flight"} of its executor."""


class FlushSignal:
    """Keeps at most one FLUSH waiting in an actor's inbox, however many producers signal.

    Producers (HTTP or worker threads) call `request`; the actor calls `taken` before it
    drains, so work added during the drain signals again and is never stranded. A long
    inbox of FLUSH messages would also delay liveness pings behind them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = False

    def request(self, tell: Callable[[], bool]) -> bool:
        """Signal unless a signal is already waiting; False when `tell` could not deliver it."""
        with self._lock:
            if self._pending:
                return True
            self._pending = True
        if tell():
            return True
        with self._lock:
            self._pending = False
        return False

    def taken(self) -> None:
        with self._lock:
            self._pending = False

    def hold(self) -> None:
        """The actor's thread: a FLUSH is on its way already (an armed timer's), so producers
        tell nothing until the actor calls `taken`."""
        with self._lock:
            self._pending = True


@dataclass
class Crashed:
    """Tell to the supervisor: a child died."""

    name: str
    incarnation: int
    error: str


class MailboxActor(pykka.ThreadingActor):
    """An actor that owns one mailbox recipient name.

    Every method of a MailboxActor and its subclasses runs in the actor's own thread, timed
    work included: timers are the process's one `Ticker` (supervisor/ticker.py), which only
    tells messages (`self.timers.every("lease", 10, TICK)`), so a timed callback is an
    ordinary message handled in order. The one exception is a PoolActor's worker threads,
    which run only `work` and then tell the actor FLUSH.
    An exception escaping a handler stops the actor; `on_failure` then reports it to the
    supervisor, which restarts it.
    """

    use_daemon_thread = True
    name: ClassVar[str] = ""

    def __init__(self, runtime: Runtime, incarnation: int = 1):
        super().__init__()
        self.runtime = runtime
        self.settings = runtime.settings
        self.mailbox = runtime.mailbox
        self.clock = runtime.clock
        self.incarnation = incarnation
        self.owner = owner_for(self.name, incarnation)
        self.faults = runtime.fault_injector(self.name)
        self.timers = ActorTimers(runtime.ticker, self.actor_ref)

    # --- pykka hooks ------------------------------------------------------------

    def on_start(self) -> None:
        """Actor thread: recover this actor's leased entries, `setup`, then look for work.

        Raising reports a crash to the supervisor and stops the actor (pykka calls no
        `on_stop`/`on_failure` for a failed start), so `setup` must not leave timers behind
        before it can raise.
        """
        try:
            self.mailbox.recover(self.name, self.owner)
            self.setup()
        except Exception as exc:
            self.timers.cancel_all()
            self._report_crash(exc)
            raise
        self.actor_ref.tell(WAKE)

    def on_receive(self, message: Any) -> Any:
        """Actor thread: stamp progress (read by the monitor's hang check), then dispatch.

        An exception from a tell stops the actor through `on_failure`; from an ask it is
        returned to the asker instead and the actor goes on.
        """
        progress = self.runtime.progress
        progress[self.name] = (self.incarnation, self.clock.monotonic())
        try:
            return self._dispatch(message)
        finally:
            progress[self.name] = (self.incarnation, self.clock.monotonic())

    def _dispatch(self, message: Any) -> Any:
        if message is PING or isinstance(message, Ping):
            return "pong"
        if isinstance(message, Wake):
            return self.on_wake()
        if isinstance(message, Flush):
            return self.on_flush()
        if isinstance(message, Tick):
            return self.on_tick()
        return self.handle(message)

    def on_failure(self, exc_type, exc_value, tb) -> None:
        """Actor thread, after a tell raised: drop timers, `teardown(crashed=True)`, report.

        Raising here is logged by pykka; the crash report may then be lost, and the monitor's
        liveness check finds the dead child instead.
        """
        self.timers.cancel_all()
        self.teardown(crashed=True)
        self._report_crash(exc_value)

    def on_stop(self) -> None:
        """Actor thread, on an orderly stop: drop timers, then `teardown(crashed=False)`.

        Raising is logged by pykka; the actor is stopped all the same.
        """
        self.timers.cancel_all()
        self.teardown(crashed=False)

    # --- for subclasses -----------------------------------------------------------

    def setup(self) -> None:
        """Actor thread, after recovery: open resources and start timers. Raising stops the actor."""

    def teardown(self, crashed: bool) -> None:
        """Actor thread, as it stops: finish or release in-flight work. Raising is logged by pykka."""

    def on_wake(self) -> None:
        """Actor thread: claim and handle due work. Raising crashes the actor (supervisor restarts it)."""

    def on_flush(self) -> None:
        """Actor thread: write back worker results. Raising crashes the actor."""

    def on_tick(self) -> None:
        """Actor thread, told by a timer or another actor: periodic work. Raising crashes the actor."""

    def handle(self, message: Any) -> Any:
        """Actor thread: any other message. The default logs it as unexpected and answers None."""
        log.warning("%s: unexpected message %r", self.name, message)

    # --- helpers ------------------------------------------------------------------

    def _report_crash(self, exc: BaseException | None) -> None:
        supervisor = self.runtime.supervisor_ref
        if supervisor is not None and supervisor.is_alive():
            supervisor.tell(Crashed(self.name, self.incarnation, f"{type(exc).__name__}: {exc}"))


class SerialActor(MailboxActor):
    """Claims entries and runs each in its own thread, one at a time (janitor, monitor).

    `execute` raising marks the entry failed (retried with back-off); an InjectedFault
    or any error outside `execute` crashes the actor and the supervisor restarts it.
    """

    def on_wake(self) -> None:
        """Actor thread: claim a batch and run each entry in turn; a full batch wakes itself again.

        A database error while claiming or acking raises and crashes the actor (the
        supervisor restarts it; the entries' leases are recovered on start).
        """
        mailbox = self.settings.mailbox
        entries = self.mailbox.claim(
            self.name, mailbox.claim_batch, mailbox.lease_seconds, self.owner
        )
        for entry in entries:
            if entry.attempts > entry.max_attempts:
                self.mailbox.nack(entry, self.owner, str(PoisonEntry(entry)), permanent=True)
                continue
            self.faults.before_entry(self.name)
            try:
                self.execute(entry)
            except Exception as exc:  # noqa: BLE001 - recorded on the entry and retried
                log.warning("%s: %s entry %d failed: %s", self.name, entry.kind, entry.id, exc)
                self.mailbox.nack(entry, self.owner, f"{type(exc).__name__}: {exc}")
            else:
                self.mailbox.ack(entry.id, self.owner)
        if len(entries) == mailbox.claim_batch:
            self.actor_ref.tell(WAKE)

    def execute(self, entry: Entry) -> None:
        """Actor thread: do one entry's work. Raising nacks the entry (retried with back-off)."""
        raise ValueError(f"{self.name} has no work of kind {entry.kind!r}")


class PoisonEntry(RuntimeError):
    """An entry claimed more often than max_attempts without ever finishing.

    Each claim crashed or hung its actor; it is not run again but failed for good.
    """

    def __init__(self, entry: Entry):
        super().__init__(
            f"gave up: claimed {entry.attempts} times without finishing (each try crashed or hung "
            f"its worker; max_attempts is {entry.max_attempts})"
        )


@dataclass
class Job:
    """One claimed entry on its way through a worker pool."""

    entry: Entry
    task: Any
    result: Any = None
    error: BaseException | None = None


def write_back_now(
    finished: int,
    in_flight: int,
    workers: int,
    backlog: bool,
    delay: float,
    due: float | None,
    now: float,
) -> bool:
    """Whether finished jobs are written back at once or wait to share a later transaction.

    They wait (up to `delay` seconds from the first of them, `due`) only while the pool is
    light: no backlog to claim after the write-back and a free worker (finished jobs hold
    their worker's place until written). Pure; `now` and `due` on one monotonic clock.
    """
    if not finished:
        return False
    if delay <= 0 or backlog or in_flight >= workers:
        return True
    return due is not None and now >= due


class PoolActor(MailboxActor):
    """Claims entries, runs `work` on a thread pool, writes results back in the actor thread.

    Workers do only I/O (HTTP, SMTP); every database write for this recipient happens
    in the actor thread, batched: one transaction for a claim, one per flush. Jobs leased
    to the actor by another's transaction (`handed_over`) start without a claim. A pool
    with a `write_back_delay` lets the outcomes of a light load gather for that long, so
    that several share one write-back transaction (`write_back_now` decides).
    """

    workers_setting: ClassVar[str] = ""

    def setup(self) -> None:
        self.workers = self.configured_workers()
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix=self.name
        )
        self.in_flight: dict[int, tuple[Job, concurrent.futures.Future]] = {}
        self.done: deque[Job] = deque()
        self.more_waiting = False
        self.flush_signal = FlushSignal()  # workers' finished jobs
        self.handover_signal = FlushSignal()  # jobs leased to this actor by another's transaction
        self.write_back_due: float | None = None  # when the oldest finished job must be written

    def configured_workers(self) -> int:
        return getattr(self.settings, self.workers_setting).workers

    def resize(self, workers: int) -> int:
        """Change the pool size live (actor thread). Returns the new size."""
        if workers != self.workers:
            old = self.executor
            self.executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix=self.name
            )
            old.shutdown(wait=False)
            log.info("%s: pool resized from %d to %d workers", self.name, self.workers, workers)
            self.workers = workers
        self.actor_ref.tell(WAKE)
        return workers

    def handle(self, message: Any) -> Any:
        """Actor thread: Resize and PoolInfo asks; anything else is logged as unexpected."""
        if isinstance(message, Resize):
            return self.resize(message.workers)
        if isinstance(message, PoolInfo):
            return {
                "workers": self.workers,
                "max_workers": self.executor._max_workers,
                "in_flight": len(self.in_flight),
            }
        return super().handle(message)

    def on_wake(self) -> None:
        """Actor thread: while a worker is free, claim enough to keep every worker busy twice over.

        Claiming only as many as are free would, under a backlog, claim one or two entries
        after every finished send, each in a transaction of its own; claiming a second
        round ahead (queued in the executor) makes every claim under load at least a pool's
        worth. Nothing is claimed while every worker is busy: the next write-back claims.
        Raising (the database, an injected fault) crashes the actor; what it claimed stays
        leased and its restart recovers it.
        """
        self._start(self.handed_over())
        if len(self.in_flight) >= self.workers:
            self.more_waiting = True
            if self.done:  # finished jobs hold places until written: write them back now
                self.actor_ref.tell(FLUSH)
        else:
            batch = min(2 * self.workers - len(self.in_flight), self.settings.mailbox.claim_batch)
            self._start(self._claim(batch))
        self.in_flight_changed()

    def _start(self, jobs: list[Job]) -> None:
        """Actor thread: hand jobs to the workers. An injected fault raises (a crash)."""
        for job in jobs:
            self.faults.before_entry(self.name)
            future = self.executor.submit(self._run, job)
            self.in_flight[job.entry.id] = (job, future)

    def _claim(self, batch: int) -> list[Job]:
        """Actor thread: claim and `prepare` in one transaction; the jobs to run.

        Poison entries (claimed more often than max_attempts) are given up and written back
        at once; entries `prepare` settled (acked, deferred) are not returned.
        """
        with write_transaction():
            entries = self.mailbox.claim(
                self.name, batch, self.settings.mailbox.lease_seconds, self.owner
            )
            tasks = self.prepare(entries) if entries else {}
        self.more_waiting = len(entries) == batch
        poisoned = [
            Job(e, tasks[e.id], error=PoisonEntry(e))
            for e in entries
            if e.id in tasks and e.attempts > e.max_attempts
        ]
        if poisoned:
            self.write_back(poisoned)
        return [
            Job(e, tasks[e.id]) for e in entries if e.id in tasks and e.attempts <= e.max_attempts
        ]

    def run_once(self) -> int:
        """Claim what is due, run each job's `work` inline and write the outcomes back.

        The synchronous driver: no worker threads, no wake-ups, one claim's worth per
        call, in the caller's thread (a test's, or the actor's). Returns how many jobs
        ran; 0 when nothing was due. `work` raising becomes the job's error as in the
        pool; anything else raising propagates, and the claimed entries stay leased.
        """
        jobs = self.handed_over() + self._claim(self.settings.mailbox.claim_batch)
        for job in jobs:
            try:
                job.result = self.work(job)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a nack in apply()
                job.error = exc
        if jobs:
            self.write_back(jobs)
        self.in_flight_changed()
        return len(jobs)

    def _run(self, job: Job) -> None:
        """Worker thread: run `work`, keep its result or exception, tell the actor."""
        try:
            job.result = self.work(job)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a nack in apply()
            job.error = exc
        self.done.append(job)
        self.flush_signal.request(self._tell_flush)

    def _tell_flush(self) -> bool:
        try:
            self.actor_ref.tell(FLUSH)
            return True
        except pykka.ActorDeadError:
            return False

    def notify_handover(self) -> None:
        """Any thread, after leasing jobs to this actor (`handed_over` returns them): one
        FLUSH starts them. Never held back by a write-back timer."""
        self.handover_signal.request(self._tell_flush)

    def on_flush(self) -> None:
        """Actor thread: write back what the workers finished (or let it wait a little for
        more, see `write_back_now`), start what was handed over, and claim again under a
        backlog. Raising crashes the actor.

        While finished jobs wait for the write-back timer, workers finishing more tell
        nothing (`FlushSignal.hold`): the timer's FLUSH writes them all, and a light load
        wakes the actor once per write-back instead of once per send.
        """
        self.flush_signal.taken()
        self.handover_signal.taken()
        delay, now = self.write_back_delay(), self.clock.monotonic()
        if write_back_now(
            len(self.done),
            len(self.in_flight),
            self.workers,
            self.more_waiting,
            delay,
            self.write_back_due,
            now,
        ):
            self.write_back_due = None
            self.timers.cancel("write_back")
            jobs: list[Job] = []
            while self.done:
                jobs.append(self.done.popleft())
            self.write_back(jobs)
        elif self.done and self.write_back_due is None:
            self.write_back_due = now + delay
            self.timers.after("write_back", delay, FLUSH)
        if self.write_back_due is not None:
            self.flush_signal.hold()
        if self.more_waiting:  # a backlog: the last claim was full, or a wake found no room
            self.on_wake()
            return
        self._start(self.handed_over())
        self.in_flight_changed()

    def write_back(self, jobs: list[Job]) -> None:
        wake: set[str] = set()
        with write_transaction():
            wake.update(self.apply_batch(jobs))
        for job in jobs:
            self.in_flight.pop(job.entry.id, None)
        self.after_commit(jobs)
        for recipient in wake:
            self.runtime.wake(recipient)

    def on_tick(self) -> None:
        ids = list(self.in_flight)
        if ids:
            self.mailbox.extend_lease(ids, self.owner, self.settings.mailbox.lease_seconds)

    def teardown(self, crashed: bool) -> None:
        executor = getattr(self, "executor", None)
        if executor is None:
            return
        if not crashed and self.in_flight:
            futures = [f for _, f in self.in_flight.values()]
            concurrent.futures.wait(futures, timeout=self.runtime.shutdown_timeout(self.name))
            jobs = []
            while self.done:
                jobs.append(self.done.popleft())
            if jobs:
                self.write_back(jobs)
        executor.shutdown(wait=False, cancel_futures=True)
        if self.in_flight and not crashed:
            released = self.mailbox.release(list(self.in_flight), self.owner)
            log.info("%s: released %d unfinished entries", self.name, released)

    # --- for subclasses -------------------------------------------------------------

    def prepare(self, entries: list[Entry]) -> dict[int, Any]:
        """Actor thread: load what workers need (one read for the batch). Keyed by entry id.

        An entry left out of the result is not run: prepare has acked or deferred it.
        """
        return {e.id: e.payload for e in entries}

    @abc.abstractmethod
    def work(self, job: Job) -> Any:
        """Worker thread: do the I/O; an exception becomes job.error."""

    @abc.abstractmethod
    def apply_batch(self, jobs: list[Job]) -> set[str]:
        """Actor thread, inside the write transaction: record a batch of outcomes, ack or nack.

        Returns the recipients to wake after the commit. Raising rolls back the batch
        and crashes the actor; its entries stay leased and are recovered on restart.
        """

    def after_commit(self, jobs: list[Job]) -> None:
        """Actor thread: side effects that must follow the commit (metrics)."""

    def write_back_delay(self) -> float:
        """Actor thread: seconds finished jobs of a light load may wait for others (0: none)."""
        return 0.0

    def handed_over(self) -> list[Job]:
        """Actor thread: jobs leased to this actor outside its claims, to start now (the
        channel pool's fresh sends from ingest). None by default."""
        return []

    def in_flight_changed(self) -> None:
        """Actor thread, after starting or finishing jobs: `self.in_flight` has its new size."""


class PerJobPoolActor(PoolActor):
    """A pool whose outcomes are written one job at a time (still one transaction per batch).

    For pools off the hot path (fetcher, AI, janitor); the channel pool writes whole batches.
    """

    def apply_batch(self, jobs: list[Job]) -> set[str]:
        wake: set[str] = set()
        for job in jobs:
            wake.update(self.apply(job) or ())
        return wake

    @abc.abstractmethod
    def apply(self, job: Job) -> set[str] | None:
        """Actor thread, inside the write transaction: record one outcome, ack or nack.

        Returns the recipients to wake after the commit.
        """
