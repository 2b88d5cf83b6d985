"""The HTTP load generator for bench/load.py: one keep-alive http.client connection per thread.

Burst (as fast as the threads go) or paced (a fixed rate of scheduled starts); writes every request's timings as JSON.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import resource
import threading
import time
from pathlib import Path


def _bodies(count: int, prefix: str) -> list[bytes]:
    return [
        json.dumps(
            {
                "title": f"{prefix} {i}",
                "body": f"load test message {i} of {count}",
                "channels": ["sink"],
            }
        ).encode()
        for i in range(count)
    ]


class Generator:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.bodies = _bodies(args.count, args.prefix)
        self.records: list[list | None] = [None] * args.count
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()
        self.counter = itertools.count()
        self.headers = {"Content-Type": "application/json"}
        if args.key:
            self.headers["Authorization"] = f"Bearer {args.key}"
        self.deadline = time.monotonic() + args.deadline
        self.start = 0.0

    def _error(self, what: str) -> None:
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1

    def worker(self) -> None:
        conn: http.client.HTTPConnection | None = None
        args = self.args
        try:
            while True:
                i = next(self.counter)
                if i >= args.count:
                    return
                scheduled = 0.0
                if args.mode == "paced":
                    scheduled = self.start + i / args.rate
                    delay = scheduled - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                if time.monotonic() > self.deadline:
                    self._error("deadline")
                    return
                if conn is None:
                    conn = http.client.HTTPConnection(
                        "127.0.0.1", args.port, timeout=args.request_timeout
                    )
                t0 = time.monotonic()
                try:
                    conn.request("POST", args.path, self.bodies[i], self.headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    t1 = time.monotonic()
                    if resp.will_close:
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as exc:
                    self._error(type(exc).__name__)
                    self.records[i] = [i, scheduled, t0, time.monotonic(), 0, None]
                    if conn is not None:
                        conn.close()
                    conn = None
                    continue
                ident = None
                if 200 <= resp.status < 300:
                    try:
                        ident = json.loads(data).get("id")
                    except (ValueError, AttributeError):
                        self._error("bad_json")
                else:
                    self._error(f"http_{resp.status}")
                self.records[i] = [i, scheduled, t0, t1, resp.status, ident]
        finally:
            if conn is not None:
                conn.close()

    def run(self) -> dict:
        threads = [
            threading.Thread(target=self.worker, daemon=True) for _ in range(self.args.threads)
        ]
        self.start = time.monotonic() + 0.05
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, self.deadline - time.monotonic()) + 5)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "mode": self.args.mode,
            "threads": self.args.threads,
            "rate": self.args.rate,
            "count": self.args.count,
            "errors": self.errors,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "unfinished_threads": sum(t.is_alive() for t in threads),
            "records": [r for r in self.records if r is not None],
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/api/v1/messages")
    parser.add_argument("--key", default=os.environ.get("BENCH_KEY", ""))
    parser.add_argument("--mode", choices=["burst", "paced"], default="burst")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument(
        "--rate", type=float, default=100.0, help="paced: request starts per second"
    )
    parser.add_argument("--prefix", default="bench")
    parser.add_argument(
        "--deadline", type=float, default=300.0, help="stop starting requests after this"
    )
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = Generator(args).run()
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, args.out)
