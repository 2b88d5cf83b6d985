"""Fault injection for tests: make a chosen actor raise or hang on its Nth entry.

Off unless `faults.<actor>` is set in the configuration; never used in production.
"""

from __future__ import annotations

import threading

from messagepusher.supervisor.config import FaultSpec


class InjectedFault(RuntimeError):
    """Raised on purpose by fault injection."""


class FaultInjector:
    """Counts entries across incarnations of one actor and fires once on the Nth."""

    def __init__(self, spec: FaultSpec | None):
        self.spec = spec
        self.count = 0
        self.fired = False
        self._lock = threading.Lock()

    def before_entry(self, actor_name: str) -> None:
        """Called in the actor's own thread before it handles an entry.

        Raises InjectedFault on the configured entry (the actor then crashes), or
        blocks the thread for hang_seconds (the actor then stops answering pings).
        """
        if self.spec is None or self.fired:
            return
        with self._lock:
            self.count += 1
            n = self.count
        if self.spec.raise_on_nth and n == self.spec.raise_on_nth:
            self.fired = True
            raise InjectedFault(f"fault injection: {actor_name} raises on entry {n}")
        if self.spec.hang_on_nth and n == self.spec.hang_on_nth:
            self.fired = True
            threading.Event().wait(self.spec.hang_seconds)
