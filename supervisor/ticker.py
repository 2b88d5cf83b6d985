"""The one timer of the process: a thread that tells actors their timed messages when due.

It never runs an actor's code, only `tell`s, so every timed callback runs in its actor's own thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import pykka

from messagepusher.supervisor.clock import Clock

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Timer:
    """One scheduled tell; `period` repeats it. Cancelling is final and thread-safe."""

    ref: pykka.ActorRef
    message: Any
    due: float
    period: float | None = None
    cancelled: bool = field(default=False)

    def cancel(self) -> None:
        self.cancelled = True


class Ticker:
    """Tells `message` to an actor after a delay, or every period, reading `clock.monotonic()`.

    Why one thread that only tells, rather than timers inside actors: a callback on a timer
    thread runs beside the actor's own thread and races on its fields; a told message is
    handled in the actor's thread like any other, in order, so an actor's methods really all
    run in its thread. A tell to a stopped actor drops the timer.

    `after`, `every` and `stop` are thread-safe and return at once; the thread starts with the
    first timer, so a CLI command that never schedules one never starts it. `run_due` tells
    what is due now in the caller's thread: a test makes the ticker with `threaded=False`
    and a `FakeClock`, advances the clock and calls it instead of waiting. An exception
    inside `tell` other than a dead actor is logged and the timer dropped; the thread goes on.
    """

    def __init__(self, clock: Clock, threaded: bool = True):
        self.clock = clock
        self.threaded = threaded
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def after(self, ref: pykka.ActorRef, delay: float, message: Any) -> Timer:
        """Tell `message` to `ref` once, `delay` seconds from now."""
        return self._add(Timer(ref, message, self.clock.monotonic() + max(0.0, delay)))

    def every(
        self, ref: pykka.ActorRef, period: float, message: Any, first: float | None = None
    ) -> Timer:
        """Tell `message` to `ref` every `period` seconds, the first after `first` (default: one period).

        A period that passes while the actor is busy is told once, not caught up.
        """
        if period <= 0:
            raise ValueError(f"a timer's period must be positive; got {period}")
        delay = period if first is None else max(0.0, first)
        return self._add(Timer(ref, message, self.clock.monotonic() + delay, period))

    def run_due(self) -> int:
        """Tell every message due by now (caller's thread); returns how many were told."""
        told = 0
        while True:
            with self._wakeup:
                if not self._heap or self._heap[0][0] > self.clock.monotonic():
                    return told
                _, _, timer = heapq.heappop(self._heap)
                if timer.cancelled:
                    continue
                if timer.period is not None:
                    now = self.clock.monotonic()
                    timer.due += timer.period
                    if timer.due <= now:  # periods missed while the process was busy: skip them
                        timer.due = now + timer.period
                    heapq.heappush(self._heap, (timer.due, next(self._order), timer))
            if self._tell(timer):
                told += 1
            else:
                timer.cancel()

    def stop(self) -> None:
        """Stop telling; timers still waiting are dropped. The thread ends within its current wait."""
        with self._wakeup:
            self._stopped = True
            self._heap.clear()
            self._wakeup.notify_all()

    def _add(self, timer: Timer) -> Timer:
        with self._wakeup:
            if self._stopped:
                timer.cancel()
                return timer
            heapq.heappush(self._heap, (timer.due, next(self._order), timer))
            if self._thread is None and self.threaded:
                self._thread = threading.Thread(target=self._loop, name="ticker", daemon=True)
                self._thread.start()
            self._wakeup.notify()
        return timer

    def _loop(self) -> None:
        """The ticker thread: sleep until the earliest timer is due, tell it, repeat."""
        while True:
            with self._wakeup:
                while not self._stopped:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._wakeup.wait()
                        continue
                    wait = self._heap[0][0] - self.clock.monotonic()
                    if wait <= 0:
                        break
                    self._wakeup.wait(wait)
                if self._stopped:
                    return
            self.run_due()

    @staticmethod
    def _tell(timer: Timer) -> bool:
        try:
            timer.ref.tell(timer.message)
        except pykka.ActorDeadError:
            return False
        except Exception:  # noqa: BLE001 - one broken timer must not stop every other one
            log.exception("ticker: could not tell %r; the timer is dropped", timer.message)
            return False
        return True


class ActorTimers:
    """An actor's named timers on the process ticker; naming one again replaces it.

    Used only from the owning actor's thread (its hooks and handlers), so it needs no lock;
    `cancel_all` runs as the actor stops, so nothing is told to a dead actor's successor.
    """

    def __init__(self, ticker: Ticker, ref: pykka.ActorRef):
        self.ticker = ticker
        self.ref = ref
        self._timers: dict[str, Timer] = {}

    def after(self, name: str, delay: float, message: Any) -> None:
        """Tell `message` to this actor once, `delay` seconds from now, replacing timer `name`."""
        self.cancel(name)
        self._timers[name] = self.ticker.after(self.ref, delay, message)

    def every(self, name: str, period: float, message: Any, first: float | None = None) -> None:
        """Tell `message` to this actor every `period` seconds, replacing timer `name`."""
        self.cancel(name)
        self._timers[name] = self.ticker.every(self.ref, period, message, first)

    def cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def cancel_all(self) -> None:
        for name in list(self._timers):
            self.cancel(name)
