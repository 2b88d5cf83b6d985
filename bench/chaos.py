"""Chaos benchmark: kill -9 the server again and again under concurrent clients, then count.

Prints acknowledged (202), arrived, lost, duplicates, messages stuck in a non-final state and
restart-to-ready figures; exits 1 when a message was lost or stuck.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kill_runs import add_drain_and_server_arguments, parse, run_and_report
from load import (
    ADMIN_PASSWORD,
    PY,
    RATE_LIMITS_OFF,
    ROOT,
    Bench,
    BenchError,
    Child,
    Sink,
    free_port,
    http_call,
    wait_http,
)

from messagepusher.messages.lifecycle import MESSAGE_FINAL


class Server:
    """One MessagePusher data dir and port, started and killed again and again."""

    def __init__(self, workdir: Path, sink_url: str, server_env: list[str]):
        self.workdir = workdir
        self.data = workdir / "mp-data"
        self.port = free_port()
        self.env = {
            "MP_DATA_DIR": str(self.data),
            "MP_SERVER__PORT": str(self.port),
            "MP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_LOGGING__LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **RATE_LIMITS_OFF,
            **dict(kv.split("=", 1) for kv in server_env),
        }
        self.sink_url = sink_url
        self.starts = 0
        self.child: Child | None = None
        self.key = ""

    serve_command = (PY, "main.py", "serve")

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait for /readyz 200; the seconds that took."""
        started = time.monotonic()
        self.child = Child(
            f"server-{self.starts}", list(self.serve_command), self.workdir, self.env
        )
        self.starts += 1
        wait_http(self.port, "/readyz", self.child, timeout)
        return time.monotonic() - started

    def create_key(self, *options: str) -> str:
        """A new API key of the admin user (`main.py key create`), with these options."""
        done = subprocess.run(
            [PY, "main.py", "key", "create", "--user", "admin", *options],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise BenchError(f"key create failed: {done.stderr}")
        return done.stdout.strip().splitlines()[-1]

    def set_up(self) -> None:
        """First start only: a key and the webhook channel to the sink."""
        self.key = self.create_key("--name", "chaos")
        channel = {"name": "sink", "type": "webhook", "config": {"url": self.sink_url}}
        status, doc = http_call(self.port, "POST", "/api/v1/channels", channel, self.key)
        if status != 201:
            raise BenchError(f"creating the sink channel: {status} {doc}")

    def check(self) -> None:
        """Raise BenchError when the server exited on its own."""
        if self.child is not None:
            self.child.check()

    def kill9(self) -> None:
        assert self.child is not None
        os.killpg(self.child.pid, signal.SIGKILL)
        self.child.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait (a no-op once it has exited); the exit code."""
        if self.child is None:
            return None
        self.child.stop(timeout=60)
        return self.child.proc.returncode

    def statuses(self) -> dict[str, int]:
        """Messages per status, read from the SQLite file (WAL: safe while the server runs)."""
        conn = sqlite3.connect(self.data / "messagepusher.db", timeout=10)
        try:
            return dict(conn.execute("SELECT status, COUNT(*) FROM message GROUP BY status"))
        finally:
            conn.close()


class Clients:
    """`count` threads POSTing messages over keep-alive connections until stopped.

    A 202 is an acknowledged message; a request cut off by a kill, or refused while the
    server is down, is retried as a new message after a short pause.
    """

    def __init__(self, port: int, key: str, count: int):
        self.port = port
        self.key = key
        self.acked: set[int] = set()
        self.refused: dict[int, int] = {}
        self.cut = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(count)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, number: int) -> None:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"}
        conn = None
        sent = 0
        while not self.stopping.is_set():
            body = json.dumps(
                {"title": f"chaos {number}-{sent}", "body": "kill -9", "channels": ["sink"]}
            )
            sent += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/api/v1/messages", body, headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
                with self.lock:
                    self.cut += 1
                self.stopping.wait(0.05)  # the server is down: try again, as a client would
                continue
            with self.lock:
                if resp.status == 202:
                    self.acked.add(json.loads(data)["id"])
                else:
                    self.refused[resp.status] = self.refused.get(resp.status, 0) + 1
            if resp.status != 202:
                self.stopping.wait(0.05)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)


def wait_drained(server: Server, timeout: float, stall: float) -> dict[str, int]:
    """Poll the database until no message is in a non-final state; the status counts seen last.

    Gives up after `timeout` s, or after `stall` s in which no message reached a final state.
    Once every message is final, whatever was delivered has arrived: the sink answered it.
    """
    deadline = time.monotonic() + timeout
    unfinished, progress_at = -1, time.monotonic()
    while True:
        statuses = server.statuses()
        now = time.monotonic()
        left = sum(n for status, n in statuses.items() if status not in MESSAGE_FINAL)
        if left != unfinished:
            unfinished, progress_at = left, now
        if left == 0 or now > deadline or now - progress_at > stall:
            return statuses
        time.sleep(0.2)


def figures(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


@dataclass
class RunEnd:
    load_seconds: float
    acked: set[int]
    arrived: set[int]
    counts: dict
    drain_seconds: float
    exit_code: int | None
    statuses: dict[str, int]


def drain_and_stop(
    clients: Clients, server: Server, sink: Sink, args: argparse.Namespace, started: float
) -> RunEnd:
    """Stop the clients, wait (bounded) until the server has settled what it accepted, stop
    it with SIGTERM; what was acknowledged, what arrived, and how the server ended."""
    clients.stop()
    load_seconds = time.monotonic() - started
    acked = set(clients.acked)
    drain_started = time.monotonic()
    wait_drained(server, args.drain_timeout, args.stall)
    drain_seconds = time.monotonic() - drain_started
    arrived = {int(k) for k in sink.dump()["first"]}
    counts = sink.count()
    exit_code = server.stop()
    return RunEnd(load_seconds, acked, arrived, counts, drain_seconds, exit_code, server.statuses())


def tear_down(bench: Bench, clients: Clients | None, server: Server | None) -> None:
    """Whatever a run leaves behind, also when it failed half-way."""
    if clients is not None:
        clients.stop()
    if server is not None:
        server.stop()
    bench.stop_all()


def run(args: argparse.Namespace, workdir: Path) -> dict:
    rng = random.Random(args.seed)
    bench = Bench(args, workdir)
    server: Server | None = None
    clients: Clients | None = None
    os.environ.pop("NOTIFY_SOCKET", None)
    try:
        bench.sink = sink = Sink(bench)
        server = Server(workdir, sink.url, args.server_env)
        first_ready = server.start()
        server.set_up()
        clients = Clients(server.port, server.key, args.clients)
        clients.start()
        restarts: list[float] = []
        started = time.monotonic()
        for kill in range(1, args.kills + 1):
            # Each round gets acknowledged messages of its own, then runs a random while.
            before = clients.acked_count()
            deadline = time.monotonic() + 30
            while clients.acked_count() < before + args.clients:
                server.check()
                if time.monotonic() > deadline:
                    raise BenchError(f"round {kill}: fewer than {args.clients} 202s in 30 s")
                time.sleep(0.02)
            time.sleep(rng.uniform(args.min_run, args.max_run))
            server.kill9()
            print(
                f"kill -9 #{kill}: {clients.acked_count():,} acknowledged so far, "
                f"{sink.count()['unique']:,} arrived",
                flush=True,
            )
            restarts.append(server.start())
        end = drain_and_stop(clients, server, sink, args, started)
        load_seconds, acked, arrived, counts = end.load_seconds, end.acked, end.arrived, end.counts
        drain_seconds, exit_code, statuses = end.drain_seconds, end.exit_code, end.statuses
    finally:
        tear_down(bench, clients, server)
    return {
        "kills": args.kills,
        "clients": args.clients,
        "seed": args.seed,
        "first_start_to_ready": first_ready,
        "restart_to_ready": restarts,
        "load_seconds": load_seconds,
        "acknowledged": len(acked),
        "arrived": len(acked & arrived),
        "lost": sorted(acked - arrived),
        "arrived_unacknowledged": len(arrived - acked),
        "duplicates": counts["dups"],
        "posts_at_sink": counts["posts"],
        "requests_cut_or_refused": clients.cut,
        "answers_not_202": clients.refused,
        "messages": sum(statuses.values()),
        "statuses": statuses,
        "stuck": {s: n for s, n in statuses.items() if s not in MESSAGE_FINAL},
        "drain_seconds": drain_seconds,
        "final_stop_exit_code": exit_code,
    }


def report(result: dict) -> str:
    lost, stuck = result["lost"], result["stuck"]
    lines = [
        f"kill -9 {result['kills']} times under {result['clients']} concurrent clients "
        f"({result['load_seconds']:.0f} s of load, seed {result['seed']})",
        f"acknowledged (202)          {result['acknowledged']:>8,}",
        f"arrived at the sink         {result['arrived']:>8,}",
        f"lost                        {len(lost):>8,}"
        + (f"  e.g. ids {lost[:10]}" if lost else ""),
        f"stuck in a non-final state  {sum(stuck.values()):>8,}" + (f"  {stuck}" if stuck else ""),
        f"duplicates at the sink      {result['duplicates']:>8,}",
        f"arrived, not acknowledged   {result['arrived_unacknowledged']:>8,}"
        "  (committed, the answer cut off by the kill)",
        f"requests cut or refused     {result['requests_cut_or_refused']:>8,}"
        "  (no 202: the client never counted them)",
        f"messages in the database    {result['messages']:>8,}  {result['statuses']}",
        f"restart to /readyz          {figures(result['restart_to_ready'])}",
        f"first start to /readyz      {result['first_start_to_ready']:.2f} s",
        f"drain after the last start  {result['drain_seconds']:.1f} s",
        f"final SIGTERM exit code     {result['final_stop_exit_code']}",
    ]
    if result["answers_not_202"]:
        lines.append(f"answers other than 202      {result['answers_not_202']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=20, help="kill -9 this many times")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument(
        "--min-run", type=float, default=0.5, help="least load before a kill, seconds"
    )
    parser.add_argument("--max-run", type=float, default=2.0, help="most load before a kill")
    parser.add_argument("--seed", type=int, default=16, help="for the random run lengths")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    add_drain_and_server_arguments(parser, "after the last start, at most")
    args = parse(parser)

    def write_json(result: dict) -> None:
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))

    title = f"MessagePusher chaos: kill -9 x{args.kills}, {args.clients} clients"
    return run_and_report(args, title, "mp-chaos-", run, report, after=write_json)


if __name__ == "__main__":
    sys.exit(main())
