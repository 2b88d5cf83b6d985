"""Prometheus metrics of one process, in its own registry (so tests can start many runtimes).

Actors count here after their commits; /metrics renders the registry, or under a root every
process of the node at once (prometheus_client's multiprocess mode, files in MULTIPROC_ENV).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# Set by the root for its workers only: a single process keeps its metrics in memory.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def fresh_multiprocess_dir(data_dir: Path) -> Path:
    """The root's metrics folder under the data dir, emptied: no file of an earlier run counts."""
    path = data_dir / "metrics-multiproc"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def forget_process(pid: int, path: Path) -> None:
    """A worker ended: drop its live gauges. Its counters stay, so the node's sums never fall."""
    mark_process_dead(pid, str(path))


class NodeLabelled:
    """A collector that adds node="<name>" to every sample of another collector."""

    def __init__(self, inner: MultiProcessCollector, node: str):
        self.inner = inner
        self.node = node

    def collect(self) -> Iterator[Metric]:
        for metric in self.inner.collect():
            metric.samples = [
                s._replace(labels={**s.labels, "node": self.node}) for s in metric.samples
            ]
            yield metric


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter(
            "messagepusher_messages_accepted", "Messages accepted over the API", registry=r
        )
        self.deliveries = Counter(
            "messagepusher_deliveries",
            "Delivery outcomes by channel type",
            ["channel_type", "outcome"],
            registry=r,
        )
        self.step_latency = Histogram(
            "messagepusher_step_seconds",
            "Time spent in each pipeline step",
            ["step"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "messagepusher_end_to_end_seconds",
            "From acceptance to a delivery's final send",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sse_streams = Gauge(
            "messagepusher_sse_streams",
            "Open Server-Sent Event streams",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.restarts = Counter(
            "messagepusher_actor_restarts", "Actor restarts", ["actor"], registry=r
        )
        self.queue_depth = Gauge(
            "messagepusher_mailbox_entries",
            "Mailbox entries by recipient and state",
            ["recipient", "state"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.oldest_ready = Gauge(
            "messagepusher_mailbox_oldest_ready_seconds",
            "Age of the oldest due entry",
            ["recipient"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.job_runs = Counter(
            "messagepusher_job_runs", "Scheduled job runs", ["job", "outcome"], registry=r
        )
        self.actor_up = Gauge(
            "messagepusher_actor_up",
            "1 while the actor is alive (under a root: in every live worker)",
            ["actor"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.http_queue_depth = Gauge(
            "messagepusher_http_task_queue_depth",
            "Requests waiting for an HTTP worker thread",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.process_rss = Gauge(
            "messagepusher_process_resident_bytes",
            "Resident memory",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.process_cpu = Gauge(
            "messagepusher_process_cpu_percent",
            "CPU use of the process",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.process_threads = Gauge(
            "messagepusher_process_threads",
            "Threads of the process",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.process_open_files = Gauge(
            "messagepusher_process_open_files",
            "Open files",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.write_lock_waited = Counter(
            "messagepusher_db_write_lock_wait_seconds",
            "SQLite: time writers spent waiting for the database's one write lock",
            registry=r,
        )
        self.write_lock_held = Counter(
            "messagepusher_db_write_lock_held_seconds",
            "SQLite: time the write lock was held; a rate near 1 means writes are the limit",
            registry=r,
        )
        self.write_lock_holds = Counter(
            "messagepusher_db_write_lock_holds",
            "SQLite: holds of the write lock (write transactions and single writes)",
            registry=r,
        )
        self.disk_free = Gauge(
            "messagepusher_data_disk_free_bytes",
            "Free bytes under the data dir",
            registry=r,
            multiprocess_mode="mostrecent",
        )

    def write_lock_hold(self, waited: float, held: float) -> None:
        """One hold of the SQLite write lock ended (the writing thread, before letting go)."""
        self.write_lock_waited.inc(waited)
        self.write_lock_held.inc(held)
        self.write_lock_holds.inc()

    def render(self, node: str) -> bytes:
        """The Prometheus text of this process, or under a root of every process of the node.

        Runs in an HTTP worker thread. Under a root every sample carries node="<node>"; the
        counters of workers that ended stay in the sums.
        """
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        registry.register(NodeLabelled(MultiProcessCollector(None, path), node))
        return generate_latest(registry)
