"""The janitor: housekeeping told by scheduled jobs (purge, maintenance, backups, reports).

Each kind of work is one mailbox entry, so a job interrupted by a crash runs again.
"""

from __future__ import annotations

from messagepusher.supervisor.actor import SerialActor


class JanitorActor(SerialActor):
    """Runs in its own thread, one entry at a time."""

    name = "janitor"
