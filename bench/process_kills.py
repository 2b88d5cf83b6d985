"""Worker kills under load: `serve --processes 2`, 16 clients, kill -9 one worker again and again.

For each kill it prints the time from the kill to the replacement serving: the first answer of
GET /api/v1/admin/status (its "node" is host:pid:start-time) from a pid other than the two that
ran before the kill. Each kill waits for the replacement and then --settle seconds of load, so
kills never overlap. At the end
every 202 must have reached the sink (0 lost); duplicates are counted. Exits 1 when a message
was lost or stuck, or a replacement never answered.

    .venv/bin/python bench/process_kills.py [--kills 10] [--clients 16]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

from chaos import Clients, Server, drain_and_stop, tear_down
from kill_runs import add_drain_and_server_arguments, parse, run_and_report
from load import PY, Bench, BenchError, Sink

from messagepusher.messages.lifecycle import MESSAGE_FINAL

PROCESSES = 2
# A replacement that has not answered after this long counts as never serving.
REPLACEMENT_TIMEOUT = 60.0
# Ten kills within a minute would pass the default process restart intensity (5 in 60 s), and
# the root would rightly give up: this bench measures replacements, not escalation.
RESTARTS_ALLOWED = {"MP_SUPERVISOR__MAX_RESTARTS": "1000"}


class RootServer(Server):
    """The chaos bench's server, run as a root with worker processes; workers are the kill targets."""

    serve_command = (PY, "main.py", "serve", "--processes", str(PROCESSES))

    def start(self, timeout: float = 90.0) -> float:
        return super().start(timeout)

    def admin_key(self) -> str:
        return self.create_key("--scopes", "admin")

    def answering_pid(self, admin_key: str) -> int | None:
        """The pid of the worker that answered one status request on a new connection, or None."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(
                "GET", "/api/v1/admin/status", headers={"Authorization": f"Bearer {admin_key}"}
            )
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()
        if resp.status != 200:
            return None
        return int(json.loads(data)["node"].split(":")[1])


def serving_pids(server: RootServer, admin_key: str, want: int, timeout: float) -> set[int]:
    """The pids seen answering, polled until `want` distinct ones answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < want:
        if time.monotonic() > deadline:
            raise BenchError(f"only {sorted(seen)} answered within {timeout:g}s")
        pid = server.answering_pid(admin_key)
        if pid is not None:
            seen.add(pid)
    return seen


def run(args: argparse.Namespace, workdir: Path) -> dict:
    bench = Bench(args, workdir)
    server: RootServer | None = None
    clients: Clients | None = None
    os.environ.pop("NOTIFY_SOCKET", None)
    try:
        bench.sink = sink = Sink(bench)
        server = RootServer(workdir, sink.url, args.server_env)
        server.env = {**RESTARTS_ALLOWED, **server.env}
        server.start()
        server.set_up()
        admin_key = server.admin_key()
        live = serving_pids(server, admin_key, PROCESSES, REPLACEMENT_TIMEOUT)
        clients = Clients(server.port, server.key, args.clients)
        clients.start()
        replacements: list[float] = []
        started = time.monotonic()
        for kill in range(1, args.kills + 1):
            time.sleep(args.settle)
            before, deadline = clients.acked_count(), time.monotonic() + 30
            while clients.acked_count() < before + args.clients:
                server.check()
                if time.monotonic() > deadline:
                    raise BenchError(f"kill {kill}: fewer than {args.clients} 202s in 30 s")
                time.sleep(0.02)
            victim = sorted(live)[kill % PROCESSES]
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            while True:
                server.check()
                if time.monotonic() - killed_at > REPLACEMENT_TIMEOUT:
                    raise BenchError(
                        f"kill {kill}: no replacement answered in {REPLACEMENT_TIMEOUT:g}s"
                    )
                pid = server.answering_pid(admin_key)
                if pid is not None and pid not in live:
                    break
            took = time.monotonic() - killed_at
            replacements.append(took)
            live = (live - {victim}) | {pid}
            print(
                f"kill -9 #{kill}: worker pid {victim} -> pid {pid} serving after {took:.2f} s "
                f"({clients.acked_count():,} acknowledged so far)",
                flush=True,
            )
        end = drain_and_stop(clients, server, sink, args, started)
        load_seconds, acked, arrived, counts = end.load_seconds, end.acked, end.arrived, end.counts
        exit_code, statuses = end.exit_code, end.statuses
    finally:
        tear_down(bench, clients, server)
    return {
        "kills": args.kills,
        "clients": args.clients,
        "replacement_seconds": replacements,
        "load_seconds": load_seconds,
        "acknowledged": len(acked),
        "lost": sorted(acked - arrived),
        "duplicates": counts["dups"],
        "requests_cut_or_refused": clients.cut,
        "answers_not_202": clients.refused,
        "stuck": {s: n for s, n in statuses.items() if s not in MESSAGE_FINAL},
        "statuses": statuses,
        "final_stop_exit_code": exit_code,
    }


def report(result: dict) -> str:
    times = result["replacement_seconds"]
    lost = result["lost"]
    return "\n".join(
        [
            f"kill -9 of one worker x{result['kills']} under {result['clients']} clients "
            f"({result['load_seconds']:.0f} s of load)",
            f"replacement serving, median {statistics.median(times):.2f} s, max {max(times):.2f} s"
            f"  (each: {', '.join(f'{t:.2f}' for t in times)})",
            f"acknowledged (202)          {result['acknowledged']:>8,}",
            f"lost                        {len(lost):>8,}"
            + (f"  e.g. ids {lost[:10]}" if lost else ""),
            f"duplicates at the sink      {result['duplicates']:>8,}",
            f"stuck in a non-final state  {sum(result['stuck'].values()):>8,}",
            f"requests cut or refused     {result['requests_cut_or_refused']:>8,}",
            f"answers other than 202      {result['answers_not_202'] or '-'}",
            f"messages by status          {result['statuses']}",
            f"final SIGTERM exit code     {result['final_stop_exit_code']}",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=10, help="kill -9 a worker this many times")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds of load between a replacement and the next kill",
    )
    add_drain_and_server_arguments(parser, "after the load, at most")
    args = parse(parser)
    title = (
        f"MessagePusher worker kills: {args.kills} kills, {args.clients} clients, "
        f"--processes {PROCESSES}"
    )
    return run_and_report(args, title, "mp-kills-", run, report)


if __name__ == "__main__":
    sys.exit(main())
