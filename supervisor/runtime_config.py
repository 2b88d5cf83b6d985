"""Run-time configuration: the whitelisted keys changed over the admin API, as numbered versions.

A change is validated exactly like the file, stored as a version that can be rolled back, applied
live (pools resize, jobs reschedule, the log level changes) and applied again at every start;
every other process and node finds the new version within WATCH_SECONDS and applies it too.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import peewee
import pykka
from peewee import fn

from messagepusher.supervisor import logs
from messagepusher.supervisor.actor import Resize
from messagepusher.supervisor.config import (
    RUNTIME_KEYS,
    ConfigError,
    Settings,
    is_runtime_key,
    load_settings,
)
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import ConfigVersion
from messagepusher.supervisor.retry import RetryPolicy
from messagepusher.supervisor.scheduler import check_schedule
from messagepusher.supervisor.timefmt import to_rfc3339

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

log = logging.getLogger(__name__)

# How often each process looks for a version made elsewhere: a change applies everywhere
# within this plus the time to apply it (the promise is 5 s).
WATCH_SECONDS = 1.0

_ERROR_KEY = re.compile(r"^config error: (?:unknown key )?([\w.\-]+)")
_FROM_ENV = re.compile(r" \(from environment \w+\)")


class RuntimeConfigError(ValueError):
    """A change that cannot be accepted; str() is one line for the operator, `key` the key at
    fault and `value` what was sent for it (None when not known)."""

    def __init__(self, message: str, key: str | None = None, value: Any = None):
        super().__init__(message)
        self.key = key
        self.value = value


# --- pure: paths, patches, diffs -----------------------------------------------------------


def leaf_paths(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the leaves of a nested dict; an empty dict is a leaf."""
    paths: list[str] = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths.extend(leaf_paths(value, path + "."))
        else:
            paths.append(path)
    return paths


def value_at(tree: dict[str, Any], path: str | None) -> Any:
    """The value at a dotted path of a nested dict, or None when the path is not there."""
    if not path:
        return None
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_whitelist(patch: dict[str, Any]) -> None:
    """Raise RuntimeConfigError naming the first key that cannot change at run time."""
    for path in leaf_paths(patch):
        if not is_runtime_key(path):
            raise RuntimeConfigError(
                f"{path} cannot be changed at run time (edit the file and restart); "
                f"these can: {', '.join(RUNTIME_KEYS)}",
                path,
                value_at(patch, path),
            )


def normalise(patch: dict[str, Any]) -> dict[str, Any]:
    """Giving a job `every` clears its `cron` and the other way round, as a new trigger replaces the old."""
    schedule = patch.get("schedule")
    if not isinstance(schedule, dict):
        return patch
    jobs = {}
    for name, job in schedule.items():
        if isinstance(job, dict) and ("every" in job) != ("cron" in job):
            job = {**job, ("cron" if "every" in job else "every"): ""}
        jobs[name] = job
    return {**patch, "schedule": jobs}


def merge_patch(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`base` with `patch` applied: nested dicts merge, None removes a key, empty dicts go."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            merged = merge_patch(out[key] if isinstance(out.get(key), dict) else {}, value)
            if merged:
                out[key] = merged
            else:
                out.pop(key, None)
        else:
            out[key] = value
    return out


def _get(tree: Any, parts: list[str]) -> Any:
    for part in parts:
        tree = tree[part] if isinstance(tree, dict) else getattr(tree, part)
    return tree


def runtime_values(settings: Settings) -> dict[str, Any]:
    """The current value of every run-time key, as a nested dict of plain values."""
    dump = settings.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key in RUNTIME_KEYS:
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _get(dump, parts)
    return out


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{dotted key: [old, new]} for every leaf that differs (a missing leaf is None)."""
    changed = {}
    for path in sorted(set(leaf_paths(before)) | set(leaf_paths(after))):
        parts = path.split(".")
        old, new = _lookup(before, parts), _lookup(after, parts)
        if old != new:
            changed[path] = [old, new]
    return changed


def _lookup(tree: dict[str, Any], parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def version_view(row: ConfigVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "at": to_rfc3339(row.at),
        "user_id": row.user_id,
        "username": row.username,
        "comment": row.comment,
        "diff": row.diff,
        "values": row.values,
    }


# --- live effects ----------------------------------------------------------------------------


def _resize(pool: str) -> Callable[[Runtime, Any], None]:
    def effect(runtime: Runtime, workers: int) -> None:
        if runtime.ref(pool) is None:
            return  # not running: it reads the new size when it starts
        try:
            runtime.ask(pool, Resize(workers), timeout=5)
        except (pykka.ActorDeadError, pykka.Timeout) as exc:
            log.warning(
                "%s did not take the new size now (%s); it uses %d workers from its next start",
                pool,
                type(exc).__name__,
                workers,
            )

    return effect


def _retry(runtime: Runtime, retry: Any) -> None:
    if runtime.mailbox is not None:
        runtime.mailbox.policy = RetryPolicy.from_settings(retry)


def _schedule(runtime: Runtime, schedule: Any) -> None:
    if runtime.scheduler is not None:
        runtime.scheduler.reschedule(schedule)


def _log_level(runtime: Runtime, level: str) -> None:
    logs.set_level(level)


# What must happen besides the new value itself; every other key is read where it is used.
EFFECTS: dict[str, Callable[[Runtime, Any], None]] = {
    "channel_pool.workers": _resize("channel_pool"),
    "ai_pool.workers": _resize("ai_pool"),
    "fetcher.workers": _resize("fetcher"),
    "retry": _retry,
    "schedule": _schedule,
    "logging.level": _log_level,
}


class RuntimeConfig:
    """Versions of the run-time overrides and their live application.

    Every method runs in the caller's thread (an HTTP worker, the main thread at start,
    the reload thread on SIGHUP, the config watcher's thread) and is serialised by one lock. A rejected change raises
    RuntimeConfigError and leaves both the database and the running settings untouched.
    """

    def __init__(self, runtime: Runtime, now: Callable[[], float] | None = None):
        self.runtime = runtime
        self.now = now or runtime.clock.now
        self._lock = threading.Lock()
        # The stored version this process runs (0: the file alone); the watcher compares it.
        self.applied_version = 0
        self._watcher: ConfigWatcher | None = None

    # --- reading ---------------------------------------------------------------------------

    def latest(self) -> ConfigVersion | None:
        return ConfigVersion.select().order_by(ConfigVersion.version.desc()).first()

    def latest_number(self) -> int:
        """The newest stored version's number (0: none); one indexed read."""
        return ConfigVersion.select(fn.MAX(ConfigVersion.version)).scalar() or 0

    def overrides(self) -> dict[str, Any]:
        row = self.latest()
        return dict(row.values) if row else {}

    def view(self) -> dict[str, Any]:
        row = self.latest()
        return {
            "version": row.version if row else 0,
            "values": runtime_values(self.runtime.settings),
            "overrides": row.values if row else {},
            "runtime_keys": list(RUNTIME_KEYS),
        }

    def validate(self, overrides: dict[str, Any]) -> Settings:
        """The settings the file gives with `overrides` on top, validated like the file."""
        check_whitelist(overrides)
        try:
            fresh = load_settings(self.runtime.config_path, overrides=self._expanded(overrides))
            check_schedule(fresh.schedule)
        except ConfigError as exc:
            match = _ERROR_KEY.match(str(exc))
            key = match.group(1) if match else None
            message = str(exc)
            # A bad value we were given is ours, not the environment variable's it replaced.
            if key in leaf_paths(overrides):
                message = _FROM_ENV.sub("", message)
            raise RuntimeConfigError(message, key, value_at(overrides, key)) from None
        return fresh

    def _expanded(self, overrides: dict[str, Any]) -> dict[str, Any]:
        # `schedule` is a mapping of jobs: an override of one job must not drop the file's others.
        if "schedule" not in overrides:
            return overrides
        base = load_settings(self.runtime.config_path).model_dump(mode="json")["schedule"]
        return {**overrides, "schedule": merge_patch(base, overrides["schedule"])}

    # --- changing --------------------------------------------------------------------------

    def patch(self, changes: Any, user_id: int | None, username: str) -> dict[str, Any]:
        """Apply a nested dict of run-time keys (None removes an override); a new version."""
        if not isinstance(changes, dict) or not changes:
            raise RuntimeConfigError(
                'send an object of the keys to change, e.g. {"channel_pool": {"workers": 4}}'
            )
        check_whitelist(changes)
        patch = normalise(changes)
        with self._lock:
            return self._commit(
                lambda latest: merge_patch(latest, patch), user_id, username, "patch"
            )

    def rollback(self, version: int, user_id: int | None, username: str) -> dict[str, Any]:
        """Make version `version` current again (0: the file alone); a new version. LookupError if unknown."""
        with self._lock:
            if version == 0:
                target: dict[str, Any] = {}
            else:
                row = ConfigVersion.get_or_none(ConfigVersion.version == version)
                if row is None:
                    raise LookupError(f"no configuration version {version}")
                target = row.values
            return self._commit(
                lambda _latest: target, user_id, username, f"rollback to version {version}"
            )

    def _commit(
        self,
        build: Callable[[dict[str, Any]], dict[str, Any]],
        user_id: int | None,
        username: str,
        comment: str,
    ) -> dict[str, Any]:
        """Store `build(latest overrides)` as the next version and apply it; caller holds the lock.

        The latest version is read inside the write transaction, so a change made at the same
        moment through another process is built upon, not lost. Two PostgreSQL transactions
        may still draw the same number; the loser (IntegrityError) builds again on the winner.
        """
        self._catch_up()
        for _attempt in range(3):
            try:
                with write_transaction():
                    latest = self.latest()
                    overrides = build(dict(latest.values) if latest else {})
                    fresh = self.validate(overrides)
                    changes = diff(runtime_values(self.runtime.settings), runtime_values(fresh))
                    if not changes and overrides == (latest.values if latest else {}):
                        return {
                            **(version_view(latest) if latest else {"version": 0}),
                            "diff": {},
                            "changed": False,
                        }
                    number = (latest.version if latest else 0) + 1
                    row = ConfigVersion.create(
                        version=number,
                        at=self.now(),
                        user_id=user_id,
                        username=username,
                        diff=changes,
                        values=overrides,
                        comment=comment,
                    )
                break
            except peewee.IntegrityError:
                continue
        else:
            raise RuntimeConfigError(
                "the configuration is being changed through other processes at this moment; "
                "send the change again"
            )
        self._apply(fresh)
        self.applied_version = number
        log.info(
            "configuration version %d (%s) by %s: %s",
            number,
            comment,
            username,
            ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in changes.items())
            or "no value changed",
        )
        return {**version_view(row), "changed": True}

    def apply_stored(self) -> None:
        """Apply the latest stored version over the file: at start, and after a restore.

        A version that no longer fits the file is logged and the file's values are used.
        """
        with self._lock:
            changed = self._apply_version(self.latest())
        if changed:
            log.info("run-time configuration applied: %s", ", ".join(changed))

    def _apply_version(self, row: ConfigVersion | None) -> list[str]:
        """Run stored version `row` (None: the file alone) and remember it; caller holds the lock."""
        try:
            fresh = self.validate(dict(row.values) if row else {})
        except RuntimeConfigError as exc:
            log.error("stored run-time configuration ignored, the file's values apply: %s", exc)
            fresh = self.validate({})
        changed = self._apply(fresh)
        self.applied_version = row.version if row else 0
        return changed

    def _catch_up(self) -> None:
        """Run the newest stored version before changing it, so the diff is against it.

        Outside any transaction: an effect may ask an actor, which may be waiting to write.
        """
        latest = self.latest()
        if (latest.version if latest else 0) != self.applied_version:
            self._apply_version(latest)

    def follow(self) -> bool:
        """Apply the newest stored version if this process does not run it yet: a change or a
        rollback made through another process or node. True when one was applied.

        Runs in the watcher's thread (or a test's); raises peewee errors when the database fails.
        """
        if self.latest_number() == self.applied_version:
            return False
        with self._lock:
            row = self.latest()
            if (row.version if row else 0) == self.applied_version:
                return False
            changed = self._apply_version(row)
        log.info(
            "configuration version %d made elsewhere applied: %s",
            self.applied_version,
            ", ".join(changed) or "no value changed here",
        )
        return True

    def start_watching(self, interval: float = WATCH_SECONDS) -> None:
        """Follow versions made through other processes and nodes, checking every `interval` s."""
        if self._watcher is None:
            self._watcher = ConfigWatcher(self, interval)
            self._watcher.start()

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def apply_file(self, fresh: Settings) -> None:
        """SIGHUP (reload thread): the file's run-time keys, with the stored versions still on top.

        Keys that only a restart can change are named in a warning and left as they are.
        """
        with self._lock:
            row = self.latest()
            try:
                effective = self.validate(dict(row.values) if row else {})
            except RuntimeConfigError as exc:
                log.error("reload refused, keeping the running configuration: %s", exc)
                return
            restart = [
                k
                for k in diff(
                    self.runtime.settings.model_dump(mode="json"), fresh.model_dump(mode="json")
                )
                if not is_runtime_key(k)
            ]
            changed = self._apply(effective)
            self.applied_version = row.version if row else 0
        if changed:
            log.info("reload applied: %s", ", ".join(changed))
        if restart:
            log.warning(
                "reload: changed in the file but applied only at the next start: %s",
                ", ".join(restart),
            )

    def _apply(self, fresh: Settings) -> list[str]:
        """Copy every changed run-time key into the running settings, then run its effect.

        The running Settings object is changed in place: actors hold it and read it on use.
        """
        live = self.runtime.settings
        changed = []
        for key in RUNTIME_KEYS:
            parts = key.split(".")
            new = _get(fresh, parts)
            if _get(live, parts) == new:
                continue
            setattr(_get(live, parts[:-1]), parts[-1], new)
            changed.append(key)
            effect = EFFECTS.get(key)
            if effect is not None:
                effect(self.runtime, new)
        return changed


class ConfigWatcher:
    """A daemon thread that calls `RuntimeConfig.follow` every `interval` seconds until stopped.

    `follow` runs in this thread; an error (the database busy or gone) is logged and the next
    round tries again, so the thread never dies of one.
    """

    def __init__(self, config: RuntimeConfig, interval: float):
        self.config = config
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Caller's thread: end the loop and wait for a round in progress."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.config.follow()
            except Exception:  # noqa: BLE001 - one failed round must not end the watching
                log.exception("configuration watcher: the stored version could not be read")
