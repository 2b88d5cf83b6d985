"""Prometheus metrics of one process, in its own registry (so tests can start many runtimes).

Actors count here after their commits; /metrics renders the registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


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
            "messagepusher_sse_streams", "Open Server-Sent Event streams", registry=r
        )
        self.restarts = Counter(
            "messagepusher_actor_restarts", "Actor restarts", ["actor"], registry=r
        )
        self.queue_depth = Gauge(
            "messagepusher_mailbox_entries",
            "Mailbox entries by recipient and state",
            ["recipient", "state"],
            registry=r,
        )
        self.oldest_ready = Gauge(
            "messagepusher_mailbox_oldest_ready_seconds",
            "Age of the oldest due entry",
            ["recipient"],
            registry=r,
        )
        self.job_runs = Counter(
            "messagepusher_job_runs", "Scheduled job runs", ["job", "outcome"], registry=r
        )
        self.actor_up = Gauge(
            "messagepusher_actor_up", "1 while the actor is alive", ["actor"], registry=r
        )
        self.http_queue_depth = Gauge(
            "messagepusher_http_task_queue_depth",
            "Requests waiting for an HTTP worker thread",
            registry=r,
        )
        self.process_rss = Gauge(
            "messagepusher_process_resident_bytes", "Resident memory", registry=r
        )
        self.process_cpu = Gauge(
            "messagepusher_process_cpu_percent", "CPU use of the process", registry=r
        )
        self.process_threads = Gauge(
            "messagepusher_process_threads", "Threads of the process", registry=r
        )
        self.process_open_files = Gauge(
            "messagepusher_process_open_files", "Open files", registry=r
        )
        self.disk_free = Gauge(
            "messagepusher_data_disk_free_bytes", "Free bytes under the data dir", registry=r
        )
