"""Readiness: is this process fit to take work. Read by /readyz and by the monitor's watchdog.

Needs a writable database, every permanent actor alive and answering, and a liveness check
that is not older than its deadline (a stuck monitor judges nobody).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from messagepusher.supervisor.config import liveness_deadline
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import SchemaVersion

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime


def readiness(runtime: Runtime) -> tuple[bool, dict[str, str]]:
    """(ready, failing parts by name). Caller's thread (an HTTP worker, the monitor's); never raises."""
    failing: dict[str, str] = {}
    try:
        with write_transaction():
            SchemaVersion.select().limit(1).execute()
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        failing["database"] = f"not writable: {exc}"
    if not runtime.accepting:
        failing["service"] = "stopping or restoring"
    try:
        status = runtime.supervisor_status()
    except Exception as exc:  # noqa: BLE001 - a busy supervisor is itself a failure
        status = {}
        failing["supervisor"] = f"did not answer: {exc}"
    unresponsive = runtime.unresponsive
    for name, child in status.items():
        if child["restart_policy"] == "permanent" and not (
            child["alive"] and child["state"] == "running"
        ):
            failing[name] = f"{child['state']}; last error: {child['last_error']}"
        elif name in unresponsive:
            failing[name] = f"not answering pings for {unresponsive[name]:.1f}s"
    if not status and "supervisor" not in failing:
        failing["supervisor"] = "not running"
    checked_at = runtime.liveness_checked_at
    deadline = liveness_deadline(runtime.settings)[0]
    if checked_at is not None and runtime.clock.monotonic() - checked_at > deadline:
        age = runtime.clock.monotonic() - checked_at
        failing.setdefault("monitor", f"no liveness check for {age:.1f}s (deadline {deadline:g}s)")
    return not failing, failing
