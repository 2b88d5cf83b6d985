"""The periodic jobs: the one list the scheduler, the janitor and the default configuration read.

Adding a job is one entry in `JOBS` (and the function it names); nothing else lists them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime


@dataclass(frozen=True)
class JobSpec:
    """One periodic job: who runs it, what it runs, and its default trigger (`every` or `cron`).

    `task` is "module:function", imported by the actor when it runs the job, so this list
    (the runtime layer) names actor code without importing it.
    """

    name: str
    actor: str
    task: str
    every: str | None = None
    cron: str | None = None

    def default_schedule(self) -> dict[str, str]:
        """The trigger as supervisor.yaml spells it: {"every": "1h"} or {"cron": "30 3 * * *"}."""
        return {"every": self.every} if self.every else {"cron": self.cron or ""}


JOBS: dict[str, JobSpec] = {
    job.name: job
    for job in (
        JobSpec("retention_purge", "janitor", "messagepusher.actors.janitor:purge", every="1h"),
        JobSpec(
            "db_maintenance", "janitor", "messagepusher.actors.janitor:maintain", cron="30 3 * * *"
        ),
        JobSpec(
            "backup", "janitor", "messagepusher.operations.backups:create_backup", cron="0 3 * * *"
        ),
        JobSpec(
            "daily_report", "janitor", "messagepusher.actors.janitor:daily_report", cron="5 0 * * *"
        ),
    )
}


def task_of(name: str) -> Callable[[Runtime], dict[str, Any]]:
    """The function that does job `name`'s work; KeyError for a job not in `JOBS`."""
    module, _, attr = JOBS[name].task.partition(":")
    return getattr(importlib.import_module(module), attr)
