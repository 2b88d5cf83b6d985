"""The monitor: liveness, queue depths, resources and alert rules, on a timer.

Feeds /metrics, /readyz and the systemd watchdog.
"""

from __future__ import annotations

from messagepusher.supervisor.actor import SerialActor


class MonitorActor(SerialActor):
    """Runs in its own thread."""

    name = "monitor"
