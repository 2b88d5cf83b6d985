"""The node registry: every process of the cluster in the `node` table, stamped as it beats.

A row not stamped for server.node_stale_seconds shows `stale`; past the retention it is removed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any

from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import Node
from messagepusher.supervisor.timefmt import to_rfc3339

if TYPE_CHECKING:
    from messagepusher.supervisor.runtime import Runtime

log = logging.getLogger(__name__)


def package_version() -> str:
    try:
        return metadata.version("messagepusher")
    except metadata.PackageNotFoundError:
        return "unknown"


def node_state(stored_state: str, last_seen: float, now: float, stale_after: float) -> str:
    """`stale` once the row went unstamped for longer than `stale_after`, else its own state."""
    return "stale" if now - last_seen > stale_after else stored_state


def node_view(row: Node, now: float, stale_after: float) -> dict[str, Any]:
    return {
        "id": row.id,
        "node_name": row.name,
        "host": row.host,
        "pid": row.pid,
        "kind": row.kind,
        "role": row.role,
        "process_index": row.process_index,
        "state": node_state(row.state, row.last_seen, now, stale_after),
        "started_at": to_rfc3339(row.started_at),
        "last_seen": to_rfc3339(row.last_seen),
        "seconds_since_seen": round(max(0.0, now - row.last_seen), 1),
        "version": row.version,
        "config_version": row.config_version,
        "components": row.components or {},
    }


def cluster_nodes(now: float, stale_after: float) -> list[dict[str, Any]]:
    """Every registered process, by node name then process index (caller's thread)."""
    rows = Node.select().order_by(Node.name, Node.process_index, Node.started_at)
    return [node_view(row, now, stale_after) for row in rows]


def cluster_counts(views: list[dict[str, Any]]) -> dict[str, Any]:
    """Nodes and processes of the cluster, live and stale, and live processes per role."""
    live = [v for v in views if v["state"] != "stale"]
    return {
        "nodes": len({v["node_name"] for v in live}),
        "processes": sum(1 for v in live if v["kind"] != "root"),
        "stale_processes": len(views) - len(live),
        "roles": dict(Counter(v["role"] for v in live if v["kind"] != "root")),
    }


class NodeRegistry:
    """This process's row, stamped by its own daemon thread ("node-registry") so that a slow
    database never delays the process's main loop. No method raises: a database that is down
    costs a stamp, logged, not the process."""

    def __init__(
        self,
        runtime: Runtime,
        kind: str,
        process_index: int,
        components: Callable[[], dict[str, Any]],
    ):
        self.runtime = runtime
        self.kind = kind
        self.process_index = process_index
        self.components = components
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> NodeRegistry:
        """Main thread: register now and keep stamping every server.heartbeat_seconds."""
        self._thread = threading.Thread(target=self._run, name="node-registry", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        period = self.runtime.settings.server.heartbeat_seconds
        while True:
            self.beat(self.components())
            if self._stopped.wait(period):
                return

    def stop(self) -> None:
        """Main thread, at a clean stop: end the stamping and remove the row."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(10)
        self.leave()

    def _fields(self, components: dict[str, Any]) -> dict[str, Any]:
        server = self.runtime.settings.server
        return {
            "name": server.node_name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "kind": self.kind,
            "role": server.role,
            "process_index": self.process_index,
            "started_at": self.runtime.started_at,
            "last_seen": self.runtime.clock.now(),
            "version": package_version(),
            "config_version": self._config_version(),
            "state": "running",
            "components": components,
        }

    def _config_version(self) -> int:
        """The run-time configuration version this process runs; a root runs none, so the newest."""
        config = self.runtime.runtime_config
        if config is None:
            return 0
        return config.latest_number() if self.kind == "root" else config.applied_version

    def beat(self, components: dict[str, Any]) -> None:
        """Stamp the row (insert it if missing), in the registry's thread.

        Also removes rows past server.node_retention_seconds: any process may, so the table
        stays small even when the node that owned a row never comes back.
        """
        server = self.runtime.settings.server
        try:
            fields = self._fields(components)
            with write_transaction():
                updated = Node.update(fields).where(Node.id == self.runtime.node_id).execute()
                if not updated:
                    Node.insert(id=self.runtime.node_id, **fields).execute()
                Node.delete().where(
                    Node.last_seen < fields["last_seen"] - server.node_retention_seconds
                ).execute()
        except Exception as exc:  # noqa: BLE001 - a stamp missed is retried on the next beat
            log.warning("node registry: could not stamp this process: %s", exc)

    def leave(self) -> None:
        """Remove the row at a clean stop: a stopped process is gone, not stale."""
        try:
            with write_transaction():
                Node.delete().where(Node.id == self.runtime.node_id).execute()
        except Exception as exc:  # noqa: BLE001 - the row then goes stale and is purged later
            log.warning("node registry: could not remove this process: %s", exc)


def remove_dead_process(pid: int) -> None:
    """The root reaped its worker `pid`: its row goes now, not after it turns stale.

    Root's main thread; never raises (the row then turns stale and is purged later).
    """
    try:
        with write_transaction():
            Node.delete().where((Node.host == socket.gethostname()) & (Node.pid == pid)).execute()
    except Exception as exc:  # noqa: BLE001
        log.warning("node registry: could not remove dead process %d: %s", pid, exc)


def actor_components(runtime: Runtime) -> dict[str, str]:
    """{child: state} of this process's actor tree; {} when the supervisor does not answer."""
    try:
        status = runtime.supervisor_status()
    except Exception:  # noqa: BLE001 - a busy supervisor shows as no components this beat
        return {}
    return {
        name: info["state"] if info["alive"] or info["state"] != "running" else "not alive"
        for name, info in status.items()
    }
