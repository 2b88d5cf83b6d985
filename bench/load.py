"""Load benchmark: the real server against the Huey peer (and a bare Falcon+waitress insert), same run.

Prints accepted and delivered msgs/s (burst) and POST-to-sink p50/p99 (paced), with ratios and the issue's targets.
`--processes N` starts the server as `serve --processes N`; `--compare-processes 1,2` measures each
count and the Huey peer in one run and prints them side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import functools
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PY = sys.executable
ADMIN_PASSWORD = "bench-Admin-pass-1"
TARGET_ACCEPTED = 1000.0
TARGET_DELIVERED = 600.0
TARGET_P99_MS = 25.0
RATE_LIMITS_OFF = {
    "MP_SECURITY__RATE_LIMIT__PER_KEY_PER_SECOND": "0",
    "MP_SECURITY__RATE_LIMIT__PER_KEY_BURST": "0",
    "MP_SECURITY__RATE_LIMIT__PER_USER_PER_SECOND": "0",
    "MP_SECURITY__RATE_LIMIT__PER_USER_BURST": "0",
}


class BenchError(Exception):
    pass


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when bench/load.py dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A child process in its own session, logging to a file; stop() ends its whole group."""

    def __init__(self, name: str, cmd: list[str], workdir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            self.proc.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_call(
    port: int, method: str, path: str, body: object = None, key: str = "", timeout: float = 10.0
) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data) if data else None
        except ValueError:
            return resp.status, data.decode(errors="replace")
    finally:
        conn.close()


def wait_ready_file(path: Path, child: Child, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check()
        if path.exists():
            return int(path.read_text())
        time.sleep(0.05)
    raise BenchError(f"{child.name} did not start within {timeout}s:\n{child.tail()}")


def wait_http(port: int, path: str, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check()
        try:
            if http_call(port, "GET", path, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{child.name} did not answer {path} within {timeout}s:\n{child.tail()}")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used so far (all cores)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


class Sink:
    def __init__(self, bench: Bench):
        workdir = bench.workdir
        self.out = workdir / "sink-arrivals.json"
        ready = workdir / "sink.port"
        self.child = bench.spawn(
            "sink", [PY, str(BENCH / "sink.py"), "--ready", str(ready), "--out", str(self.out)]
        )
        self.port = wait_ready_file(ready, self.child, 15)
        self.url = f"http://127.0.0.1:{self.port}/in"

    def _control(self, method: str, path: str) -> dict:
        status, doc = http_call(self.port, method, path)
        if status != 200 or not isinstance(doc, dict):
            raise BenchError(f"sink {path}: {status} {doc}")
        return doc

    def count(self) -> dict:
        return self._control("GET", "/_count")

    def reset(self) -> None:
        self._control("POST", "/_reset")

    def dump(self) -> dict:
        self._control("POST", "/_dump")
        return json.loads(self.out.read_text())


class Target:
    """A system under test: where to POST, with which key, and which processes do its work."""

    def __init__(
        self,
        name: str,
        port: int,
        children: list[Child],
        key: str = "",
        delivers: bool = True,
        publishes_lock_times: bool = False,
    ):
        self.name = name
        self.delivers = delivers
        self.publishes_lock_times = publishes_lock_times
        self.last_cpu: dict[int, float] = {}
        self.port = port
        self.children = children
        self.key = key

    @property
    def pids(self) -> list[int]:
        """The target's processes and all their descendants (a server's worker processes)."""
        pids = [c.pid for c in self.children]
        for pid in list(pids):
            with contextlib.suppress(psutil.Error):
                pids.extend(p.pid for p in psutil.Process(pid).children(recursive=True))
        return pids

    def check(self) -> None:
        for child in self.children:
            child.check()

    def dead(self) -> str:
        """Why the target is dead ("" while every process runs), with the end of its log."""
        for child in self.children:
            if child.proc.poll() is not None:
                return f"{child.name} exited with {child.proc.returncode}; its log ends:\n{child.tail(15)}"
        return ""

    def cpu(self) -> float:
        """CPU seconds of the target's processes, the last value seen for one that has exited
        (a worker process that was replaced keeps counting)."""
        for pid in self.pids:
            try:
                t = psutil.Process(pid).cpu_times()
                self.last_cpu[pid] = t.user + t.system
            except psutil.Error:
                pass
        return sum(self.last_cpu.values())

    def write_lock_seconds(self) -> tuple[float, float]:
        """(held, waited) seconds of the SQLite write lock so far, summed over the node's
        processes, from /metrics; NaNs for a target that does not publish them (Huey)."""
        if not self.publishes_lock_times:
            return float("nan"), float("nan")
        status, text = http_call(self.port, "GET", "/metrics")
        sums = {"held": 0.0, "wait": 0.0}
        if status == 200 and isinstance(text, str):
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    for kind in sums:
                        if sample.name == f"messagepusher_db_write_lock_{kind}_seconds_total":
                            sums[kind] += sample.value
        return sums["held"], sums["wait"]

    def rss_mb(self) -> float:
        """Resident memory of the target's running processes, MiB."""
        total = 0
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):  # exited: counts as nothing
                total += psutil.Process(pid).memory_info().rss
        return total / (1024 * 1024)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.children: list[Child] = []
        self.runs = 0
        self.sink: Sink | None = None

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, cmd, self.workdir, env)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception as exc:  # keep stopping the others
                print(f"warning: stopping {child.name}: {exc}", file=sys.stderr)

    # -- the systems under test -------------------------------------------------------------

    def start_ours(self, processes: int | None = None) -> Target:
        """Start the server; with `processes`, as `serve --processes N` (1: the plain `serve`)."""
        data = self.workdir / f"mp-data-{processes or 'default'}"
        data.mkdir()
        port = free_port()
        env = {
            "MP_DATA_DIR": str(data),
            "MP_SERVER__PORT": str(port),
            "MP_SERVER__HOST": "127.0.0.1",
            "MP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_LOGGING__LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **RATE_LIMITS_OFF,
            **dict(kv.split("=", 1) for kv in self.args.server_env),
        }
        os.environ.pop("NOTIFY_SOCKET", None)
        serve = [PY, "main.py", "serve"]
        if processes is not None and processes != 1:
            serve += ["--processes", str(processes)]
        server = self.spawn(f"messagepusher-p{processes or 1}", serve, env)
        wait_http(port, "/readyz", server, 60)
        done = subprocess.run(
            [PY, "main.py", "key", "create", "--user", "admin", "--name", "bench"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=_die_with_parent,
        )
        if done.returncode != 0:
            raise BenchError(f"key create failed: {done.stderr}")
        key = done.stdout.strip().splitlines()[-1]
        assert self.sink is not None
        status, doc = http_call(
            port,
            "POST",
            "/api/v1/channels",
            {"name": "sink", "type": "webhook", "config": {"url": self.sink.url}},
            key,
        )
        if status not in (200, 201):
            raise BenchError(f"creating the sink channel: {status} {doc}")
        name = "MessagePusher" if processes is None else f"MessagePusher x{processes}"
        return Target(name, port, [server], key, publishes_lock_times=True)

    def start_huey(self) -> Target:
        assert self.sink is not None
        env = {
            "BENCH_HUEY_DB": str(self.workdir / "huey.db"),
            "BENCH_SINK_URL": self.sink.url,
            "BENCH_HUEY_SYNCHRONOUS": self.args.huey_synchronous,
        }
        consumer = self.spawn(
            "huey-consumer",
            [
                PY,
                str(BENCH / "huey_peer.py"),
                "consumer",
                "--workers",
                "8",
                "--delay",
                str(self.args.huey_delay),
            ],
            env,
        )
        ready = self.workdir / "huey-web.port"
        web = self.spawn(
            "huey-web",
            [PY, str(BENCH / "huey_peer.py"), "web", "--threads", "16", "--ready", str(ready)],
            env,
        )
        port = wait_ready_file(ready, web, 30)
        time.sleep(0.5)
        consumer.check()
        return Target("Huey peer", port, [web, consumer])

    def start_bare(self) -> Target:
        ready = self.workdir / "bare.port"
        bare = self.spawn(
            "bare",
            [
                PY,
                str(BENCH / "bare_peer.py"),
                "--threads",
                "16",
                "--ready",
                str(ready),
                "--db",
                str(self.workdir / "bare.db"),
            ],
        )
        return Target("bare", wait_ready_file(ready, bare, 30), [bare], delivers=False)

    # -- measuring ----------------------------------------------------------------------------

    def loadgen(self, target: Target, mode: str, count: int, threads: int, rate: float) -> dict:
        self.runs += 1
        out = self.workdir / f"loadgen-{self.runs}.json"
        budget = count / 200 + 60 if mode == "burst" else count / rate + 60
        cmd = [
            PY,
            str(BENCH / "loadgen.py"),
            "--port",
            str(target.port),
            "--mode",
            mode,
            "--count",
            str(count),
            "--threads",
            str(threads),
            "--rate",
            str(rate),
            "--prefix",
            f"bench-{self.runs}",
            "--deadline",
            str(budget),
            "--out",
            str(out),
        ]
        done = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**os.environ, "BENCH_KEY": target.key},
            capture_output=True,
            text=True,
            timeout=budget + 30,
            preexec_fn=_die_with_parent,
        )
        if done.returncode != 0 or not out.exists():
            raise BenchError(f"load generator failed ({done.returncode}): {done.stderr[-2000:]}")
        return json.loads(out.read_text())

    def wait_delivered(
        self, target: Target, ids: set[str], timeout: float, stall: float
    ) -> tuple[dict[str, float], str]:
        """Arrivals at the sink of `ids` and why the wait ended early ("" if all came).

        Waits until all came, `timeout` passed, nothing came for `stall` s, or the target died.
        """
        assert self.sink is not None
        deadline = time.monotonic() + timeout
        seen, progress_at = -1, time.monotonic()
        while True:
            stats = self.sink.count()
            target.cpu()
            now = time.monotonic()
            if stats["unique"] != seen:
                seen, progress_at = stats["unique"], now
            dead = target.dead()
            if stats["unique"] >= len(ids) or now > deadline or now - progress_at > stall or dead:
                arrivals = self.sink.dump()["first"]
                matched = {k: v for k, v in arrivals.items() if k in ids}
                if len(matched) >= len(ids):
                    return matched, ""
                if dead or now > deadline or now - progress_at > stall:
                    why = dead or (
                        f"gave up after {timeout:.0f}s"
                        if now > deadline
                        else f"nothing arrived for {stall:.0f}s"
                    )
                    return matched, why
            time.sleep(0.05)

    def wait_quiet(self) -> float:
        """Wait (bounded by --quiet-wait) until other processes use < --quiet-cores for 3 s in a row.

        The machine is shared; returns the other processes' cores in the last 1 s window.
        """
        deadline = time.monotonic() + self.args.quiet_wait
        ours = [os.getpid()] + [c.pid for c in self.children if c.proc.poll() is None]
        calm, others = 0, 0.0
        waited = time.monotonic()
        while True:
            busy0, mine0, t0 = machine_busy_seconds(), cpu_seconds(ours), time.monotonic()
            time.sleep(1.0)
            elapsed = time.monotonic() - t0
            others = (
                max(0.0, (machine_busy_seconds() - busy0) - (cpu_seconds(ours) - mine0)) / elapsed
            )
            calm = calm + 1 if others < self.args.quiet_cores else 0
            if calm >= 3:
                return others
            if time.monotonic() > deadline:
                print(
                    f"  note: other processes still use {others:.2f} cores after waiting "
                    f"{time.monotonic() - waited:.0f}s; measuring anyway",
                    flush=True,
                )
                return others

    def measure(
        self,
        target: Target,
        mode: str,
        count: int,
        threads: int,
        rate: float = 0.0,
        profile: Path | None = None,
        quiet: bool = True,
    ) -> dict:
        assert self.sink is not None
        target.check()
        calm = self.wait_quiet() if quiet and self.args.quiet_wait > 0 else float("nan")
        self.sink.reset()
        held0, waited0 = target.write_lock_seconds()  # before the CPU count: a scrape costs some
        cpu0, sink0 = target.cpu(), cpu_seconds([self.sink.child.pid])
        machine0 = machine_busy_seconds()
        spy = self.start_profile(target.pids[0], profile) if profile else None
        wall0 = time.monotonic()
        gen = self.loadgen(target, mode, count, threads, rate or 100.0)
        records = gen["records"]
        ok = [r for r in records if r[4] == 202 and r[5] is not None]
        ids = {str(r[5]) for r in ok}
        timeout = (count / 50 + 30) if mode == "burst" else 60
        if target.delivers:
            arrivals, failure = self.wait_delivered(target, ids, timeout, stall=30)
        else:
            arrivals, failure = {}, target.dead()
        wall = time.monotonic() - wall0
        profiler_cpu = 0.0
        if spy is not None:
            profiler_cpu = cpu_seconds([spy.pid])
            self.stop_profile(spy)
        cpu = target.cpu() - cpu0
        sink_cpu = cpu_seconds([self.sink.child.pid]) - sink0
        others = (
            machine_busy_seconds() - machine0 - cpu - sink_cpu - gen["cpu_seconds"] - profiler_cpu
        )
        stats = self.sink.count()
        held1, waited1 = target.write_lock_seconds()

        first_start = min(r[2] for r in records) if records else 0.0
        last_answer = max(r[3] for r in records) if records else 0.0
        post_ms = [(r[3] - r[2]) * 1000 for r in ok]
        e2e_ms = [(arrivals[str(r[5])] - r[2]) * 1000 for r in ok if str(r[5]) in arrivals]
        last_arrival = max(arrivals.values()) if arrivals else 0.0
        lateness = [(r[2] - r[1]) * 1000 for r in records if r[1]]
        return {
            "mode": mode,
            "count": count,
            "threads": threads,
            "rate": rate,
            "failure": failure,
            "sent": len(records),
            "accepted": len(ok),
            "errors": gen["errors"],
            "accepted_per_s": len(ok) / (last_answer - first_start) if ok else 0.0,
            "post_seconds": last_answer - first_start,
            "post_p50_ms": pct(post_ms, 50),
            "post_p99_ms": pct(post_ms, 99),
            "delivered": len(e2e_ms),
            "undelivered": len(ok) - len(e2e_ms),
            "duplicates": stats["dups"],
            "delivered_per_s": len(e2e_ms) / (last_arrival - first_start) if e2e_ms else 0.0,
            "deliver_seconds": last_arrival - first_start if e2e_ms else 0.0,
            "e2e_p50_ms": pct(e2e_ms, 50),
            "e2e_p99_ms": pct(e2e_ms, 99),
            "e2e_max_ms": max(e2e_ms) if e2e_ms else float("nan"),
            "achieved_rate": len(records) / (max(r[2] for r in records) - first_start)
            if len(records) > 1
            else 0.0,
            "start_lateness_p99_ms": pct(lateness, 99) if lateness else 0.0,
            "wall_seconds": wall,
            "cpu_server": cpu,
            "cpu_sink": sink_cpu,
            "cpu_client": gen["cpu_seconds"],
            "cpu_ms_per_msg": cpu * 1000 / len(ok) if ok else float("nan"),
            "rss_mb": target.rss_mb(),
            "cpu_others": max(0.0, others),
            "cpu_profiler": profiler_cpu,
            "others_cores_before": calm,
            "cpu_capacity": wall * (os.cpu_count() or 1),
            "write_lock_held_share": (held1 - held0) / wall if wall else float("nan"),
            "write_lock_waited_s": waited1 - waited0,
        }

    def warm_up(self, target: Target, count: int) -> None:
        result = self.measure(target, "burst", count, 8, quiet=False)
        if result["accepted"] < count or (target.delivers and result["undelivered"]):
            raise BenchError(
                f"{target.name} warm-up: {result['accepted']}/{count} accepted, "
                f"{result['undelivered']} undelivered, errors {result['errors']}"
            )

    # -- profiling ----------------------------------------------------------------------------

    def start_profile(self, pid: int, out: Path) -> subprocess.Popen | None:
        spy = shutil.which(
            "py-spy", path=f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        )
        if spy is None:
            print(
                "warning: --profile needs py-spy (.venv/bin/pip install py-spy); not profiling",
                file=sys.stderr,
            )
            return None
        cmd = [
            spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(self.args.profile_rate),
            "--nonblocking",
            "--format",
            "raw",
            "--threads",
            "--output",
            str(out),
        ]
        if self.args.profile_gil:
            cmd.append("--gil")
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=open(out.with_suffix(".log"), "w"),  # noqa: SIM115
            preexec_fn=_die_with_parent,
        )
        time.sleep(1.0)  # py-spy attaches
        self.profiled_pid = pid
        self.thread_cpu_first = thread_cpu(pid)
        self.thread_cpu_last = dict(self.thread_cpu_first)
        self.profile_started = time.monotonic()
        self.sampling = threading.Event()
        self.sampler = threading.Thread(target=self._sample_threads, args=(pid,), daemon=True)
        self.sampler.start()
        return proc

    def _sample_threads(self, pid: int) -> None:
        """Keep each thread's latest CPU time: threads of restarted actors and replaced pools vanish."""
        while not self.sampling.wait(0.25):
            self.thread_cpu_last.update(thread_cpu(pid))

    def stop_profile(self, proc: subprocess.Popen) -> None:
        self.sampling.set()
        self.sampler.join(5)
        self.thread_cpu_last.update(thread_cpu(self.profiled_pid))
        self.profile_seconds = time.monotonic() - self.profile_started
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per native thread id of a process."""
    try:
        return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}
    except psutil.Error:
        return {}


FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
THREAD = re.compile(r"^thread \((?P<tid>\d+|0x[0-9a-fA-F]+)\)(?::\s*(?P<name>.*))?$")


def thread_group(name: str) -> str:
    """'ChannelPoolActor-9' and 'channel_pool_6' -> their family, so restarts and pool threads add up."""
    return re.sub(r"[-_]\d+$", "", name.strip('"')) or name


def summarize_profile(
    path: Path,
    seconds: float,
    cpu_first: dict[int, float],
    cpu_last: dict[int, float],
    rate: int,
    top: int = 20,
) -> str:
    """CPU per thread family (from /proc) and self/inclusive samples per function (py-spy raw output)."""
    if not path.exists() or path.stat().st_size == 0:
        return f"(no profile written: see {path.with_suffix('.log')})"
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_group: dict[str, Counter[str]] = {}
    group_samples: Counter[str] = Counter()
    names: dict[int, str] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        funcs = []
        group = "?"
        for frame in stack.split(";"):
            t = THREAD.match(frame)
            if t:
                tid = int(t.group("tid"), 0)
                names[tid] = t.group("name") or str(tid)
                group = thread_group(names[tid])
                continue
            if frame.startswith("process "):
                continue
            m = FRAME.match(frame)
            funcs.append(f"{m.group('file')}:{m.group('func')}" if m else frame)
        if funcs:
            self_time[funcs[-1]] += count
            unique = set(funcs)
            for f in unique:
                inclusive[f] += count
            by_group.setdefault(group, Counter()).update(dict.fromkeys(unique, count))
            group_samples[group] += count
    cpu_by_group: Counter[str] = Counter()
    for tid, last in cpu_last.items():
        cpu_by_group[thread_group(names.get(tid, "(never sampled)"))] += last - cpu_first.get(
            tid, 0.0
        )
    cpu_total = sum(cpu_by_group.values()) or float("nan")
    out = [
        f"{seconds:.1f}s profiled; the server used {cpu_total:.1f} CPU s (= {cpu_total / seconds:.2f} cores); "
        f"{total} py-spy samples at {rate} Hz (= {total / (seconds * rate):.2f} threads not idle on average"
        "; with --gil: the share of time the GIL was held)"
    ]
    out.append("  CPU seconds per thread family (/proc, exact):")
    out += [
        f"    {c:7.1f} s  {c / cpu_total:6.1%}  {g}"
        for g, c in cpu_by_group.most_common(10)
        if c > 0.05
    ]
    out.append("  top self time (function, % of samples):")
    out += [f"    {c / total:6.1%}  {name}" for name, c in self_time.most_common(top)]
    out.append("  top inclusive time:")
    out += [f"    {c / total:6.1%}  {name}" for name, c in inclusive.most_common(top + 10)]
    for group, _ in (cpu_by_group or group_samples).most_common(3):
        counter = by_group.get(group)
        if not counter:
            continue
        out.append(f"  inclusive within {group} threads (% of all samples):")
        skip = ("threading.py:", "pykka/_actor.py:", "concurrent/futures/thread.py:")
        rows = [(f, c) for f, c in counter.most_common(60) if not f.startswith(skip)][:15]
        out += [f"    {c / total:6.1%}  {f}" for f, c in rows]
    return "\n".join(out)


# -- the report ---------------------------------------------------------------------------------


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None or v != v:  # None or nan
        return "-"
    return f"{v:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b or a != a or b != b:
        return "-"
    return f"{a / b:.2f}"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "MISS")


def report(args: argparse.Namespace, results: dict) -> str:
    ours, peer, bare = results.get("ours", {}), results.get("peer", {}), results.get("bare", {})
    ob, pb, op, pp = ours.get("burst"), peer.get("burst"), ours.get("paced"), peer.get("paced")
    rows: list[tuple[str, str, str, str, str, str]] = []

    def row(label, key, digits=0, target="", ok=None, a=None, b=None):
        a = a if a is not None else (a_run or {}).get(key)
        b = b if b is not None else (b_run or {}).get(key)
        rows.append((label, fmt(a, digits), fmt(b, digits), ratio(a, b), target, verdict(ok)))

    a_run, b_run = ob, pb
    rows.append((f"BURST: {args.messages:,} msgs, 32 keep-alive clients", "", "", "", "", ""))
    acc_ok = del_ok = peer_ok = None
    if ob:
        acc_ok = ob["accepted_per_s"] >= TARGET_ACCEPTED
        del_ok = ob["delivered_per_s"] >= TARGET_DELIVERED and ob["undelivered"] == 0
        if pb:
            peer_ok = ob["delivered_per_s"] >= pb["delivered_per_s"] and ob["undelivered"] == 0
    row(
        "  accepted msgs/s (202s / POSTing time)",
        "accepted_per_s",
        0,
        f">= {TARGET_ACCEPTED:,.0f}",
        acc_ok,
    )
    row(
        "  delivered msgs/s (first POST -> last arrival)",
        "delivered_per_s",
        0,
        f">= {TARGET_DELIVERED:,.0f}",
        del_ok,
    )
    if ob and pb:
        rows.append(
            (
                "  delivered, ours/peer",
                "",
                "",
                ratio(ob["delivered_per_s"], pb["delivered_per_s"]),
                ">= 1.00",
                verdict(peer_ok),
            )
        )
    row("  POSTing time s", "post_seconds", 2)
    row("  first POST -> last arrival s", "deliver_seconds", 2)
    row("  POST answer p50 ms", "post_p50_ms", 1)
    row("  POST answer p99 ms", "post_p99_ms", 1)
    row("  POST -> sink p50 ms", "e2e_p50_ms", 0)
    row("  POST -> sink p99 ms", "e2e_p99_ms", 0)
    row("  accepted (202 answers)", "accepted")
    row("  undelivered (of accepted)", "undelivered")
    row("  duplicate arrivals", "duplicates")
    row("  CPU s: server processes", "cpu_server", 1)
    row("  server CPU ms per message", "cpu_ms_per_msg", 2)
    row("  server RSS MiB at the end of the phase", "rss_mb", 0)
    row("  CPU s: sink", "cpu_sink", 1)
    row("  CPU s: load generator", "cpu_client", 1)
    row("  CPU s: other processes on the machine", "cpu_others", 1)
    if (ob or {}).get("cpu_profiler"):
        row("  CPU s: py-spy (--profile; perturbs the figures)", "cpu_profiler", 1)
    row("  CPU s available (wall x cores)", "cpu_capacity", 1)
    row("  SQLite write lock held, share of the phase", "write_lock_held_share", 2)
    row("  SQLite write lock: writers' summed wait, s", "write_lock_waited_s", 1)
    rows.append(
        (
            "  idle server CPU, cores (5 s after warm-up)",
            fmt(ours.get("idle_cores"), 3),
            fmt(peer.get("idle_cores"), 3),
            ratio(ours.get("idle_cores"), peer.get("idle_cores")),
            "",
            "",
        )
    )
    a_run, b_run = op, pp
    rows.append(
        (f"PACED: {args.paced:,} msgs at {args.rate:g} msg/s, 8 clients", "", "", "", "", "")
    )
    row("  achieved start rate msgs/s", "achieved_rate", 1)
    row("  POST -> sink p50 ms", "e2e_p50_ms", 1)
    p99_ok = None if not op else (op["e2e_p99_ms"] <= TARGET_P99_MS and op["undelivered"] == 0)
    row("  POST -> sink p99 ms", "e2e_p99_ms", 1, f"<= {TARGET_P99_MS:g}", p99_ok)
    row("  POST -> sink max ms", "e2e_max_ms", 1)
    row("  POST answer p99 ms", "post_p99_ms", 1)
    row("  undelivered (of accepted)", "undelivered")
    row("  CPU s: server processes", "cpu_server", 1)
    row("  server CPU ms per message", "cpu_ms_per_msg", 2)
    row("  server RSS MiB at the end of the phase", "rss_mb", 0)
    row("  CPU s: other processes on the machine", "cpu_others", 1)
    if (op or {}).get("cpu_profiler"):
        row("  CPU s: py-spy (--profile; perturbs the figures)", "cpu_profiler", 1)
    if bare.get("burst"):
        a_run, b_run = bare["burst"], None
        rows.append(
            (
                "BARE Falcon+waitress, 1 SQLite insert per POST (ceiling of the HTTP stack)",
                "",
                "",
                "",
                "",
                "",
            )
        )
        row("  req/s, same client, 32 keep-alive", "accepted_per_s", 0)
        row("  POST answer p99 ms", "post_p99_ms", 1)
        row("  server CPU ms per request", "cpu_ms_per_msg", 2)
        row("  CPU s: other processes on the machine", "cpu_others", 1)
        if ob:
            rows.append(
                (
                    "  MessagePusher accepted / bare",
                    ratio(ob["accepted_per_s"], bare["burst"]["accepted_per_s"]),
                    "",
                    "",
                    "",
                    "",
                )
            )

    header = ("figure", "MessagePusher", "Huey peer", "ours/peer", "target", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(6)]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        ),
        "  ".join("-" * w for w in widths),
    ]
    for r in rows:
        if not any(r[1:]):
            lines.append(r[0])
        else:
            lines.append(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(r, widths, strict=True))
                )
            )
    for name, res in (("MessagePusher", ours), ("Huey peer", peer), ("bare", bare)):
        if res.get("failure"):
            lines.append(f"FAILED {name}: {res['failure']}")
        for phase, run in res.items():
            if not isinstance(run, dict):
                continue
            if run.get("errors"):
                lines.append(f"client errors {name} {phase}: {run['errors']}")
            if run.get("failure"):
                lines.append(f"FAILED {name} {phase}: {run['failure']}")
    return "\n".join(lines)


def compare_report(counts: list[int], results: dict) -> str:
    """One row per system of the --compare-processes run; ratios against the first count."""
    header = (
        "system",
        "accepted/s",
        "delivered/s",
        "paced p99 ms",
        "CPU ms/msg burst",
        "CPU ms/msg paced",
        "lock held burst",
        "accepted x",
        "delivered x",
    )
    base = results.get(f"ours{counts[0]}", {}).get("burst")
    systems = [(f"MessagePusher --processes {n}", results.get(f"ours{n}", {})) for n in counts]
    systems.append(("Huey peer", results.get("peer", {})))
    rows = []
    for label, res in systems:
        if not res:
            continue
        burst, paced = res.get("burst") or {}, res.get("paced") or {}
        rows.append(
            (
                label,
                fmt(burst.get("accepted_per_s")),
                fmt(burst.get("delivered_per_s")),
                fmt(paced.get("e2e_p99_ms"), 1),
                fmt(burst.get("cpu_ms_per_msg"), 2),
                fmt(paced.get("cpu_ms_per_msg"), 2),
                fmt(burst.get("write_lock_held_share"), 2),
                ratio(burst.get("accepted_per_s"), (base or {}).get("accepted_per_s")),
                ratio(burst.get("delivered_per_s"), (base or {}).get("delivered_per_s")),
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        ),
        "  ".join("-" * w for w in widths),
    ]
    lines += [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    for label, res in systems:
        for phase, run in [("", res), *res.items()]:
            if isinstance(run, dict) and run.get("failure"):
                lines.append(f"FAILED {label}{' ' + phase if phase else ''}: {run['failure']}")
            if isinstance(run, dict) and run.get("errors"):
                lines.append(f"client errors {label} {phase}: {run['errors']}")
    return "\n".join(lines)


def process_counts(text: str) -> list[int]:
    """`1,2` -> [1, 2]; raises argparse.ArgumentTypeError naming the bad part."""
    counts = []
    for part in text.split(","):
        if not part.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a process count; write counts such as 1,2"
            )
        counts.append(int(part))
    if not counts:
        raise argparse.ArgumentTypeError("name at least one process count, e.g. 1,2")
    return counts


def run_system(
    bench: Bench,
    results: dict,
    key: str,
    label: str,
    start,
    phases: list[tuple],
    profile: Path | None = None,
) -> None:
    """Start one system, warm it up, measure its phases; a failure is recorded, not raised."""
    out = results.setdefault(key, {})
    first_child = len(bench.children)
    try:
        print(f"{label}: starting ...", flush=True)
        target = start()
        bench.warm_up(target, bench.args.warmup)
        cpu0, t0 = target.cpu(), time.monotonic()
        time.sleep(5.0)
        out["idle_cores"] = (target.cpu() - cpu0) / (time.monotonic() - t0)
        for mode, count, threads, rate in phases:
            print(
                f"{label}: {mode} {count:,} messages"
                + (f" at {rate:g}/s" if rate else "")
                + " ...",
                flush=True,
            )
            out[mode] = bench.measure(
                target,
                mode,
                count,
                threads,
                rate,
                profile=profile if mode == bench.args.profile_phase else None,
            )
            if out[mode]["failure"]:
                print(f"{label}: {mode} failed: {out[mode]['failure']}", flush=True)
                break
    except BenchError as exc:
        out["failure"] = str(exc)
        print(f"{label} failed: {exc}", flush=True)
    finally:
        for child in bench.children[first_child:]:
            child.stop()


def source_version() -> str:
    """The commit the server runs from, "+changes" when the tree differs from it (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + ("+changes" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000, help="burst size (default 10,000)")
    parser.add_argument("--paced", type=int, default=1_000, help="paced messages (default 1,000)")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="paced rate, msgs/s (default 100)"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="messages sent and delivered before measuring"
    )
    parser.add_argument(
        "--skip-peer", action="store_true", help="measure only MessagePusher (and bare)"
    )
    parser.add_argument(
        "--skip-ours", action="store_true", help="do not measure MessagePusher (peer experiments)"
    )
    parser.add_argument(
        "--skip-bare", action="store_true", help="do not measure the bare Falcon+waitress insert"
    )
    parser.add_argument(
        "--huey-synchronous",
        choices=["default", "normal"],
        default="default",
        help="Huey's SQLite synchronous: its default (FULL) or NORMAL like MessagePusher",
    )
    parser.add_argument(
        "--huey-delay",
        type=float,
        default=0.1,
        help="Huey consumer's initial polling delay, s (its default 0.1)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="before each phase wait up to this long for other processes to calm down (0: don't)",
    )
    parser.add_argument(
        "--quiet-cores",
        type=float,
        default=0.15,
        help="'calm': other processes use fewer cores than this for 3 s",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="MP_KEY=VALUE",
        help="extra environment for the MessagePusher server (experiments), repeatable",
    )
    parser.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="start the server as `serve --processes N` (0: one per core; default: plain `serve`)",
    )
    parser.add_argument(
        "--compare-processes",
        type=process_counts,
        metavar="1,2",
        help="measure the server at each process count and the Huey peer in one run, "
        "side by side (skips bare)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the server during its burst (perturbs it)"
    )
    parser.add_argument(
        "--profile-phase",
        choices=["burst", "paced"],
        default="burst",
        help="with --profile: which phase to profile (default burst)",
    )
    parser.add_argument(
        "--profile-rate",
        type=int,
        default=50,
        help="with --profile: py-spy samples per second (it costs CPU; default 50)",
    )
    parser.add_argument(
        "--profile-gil", action="store_true", help="with --profile: only samples holding the GIL"
    )
    parser.add_argument(
        "--timeout", type=float, default=2400.0, help="hard limit for the whole run, s"
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args()
    if any("=" not in kv for kv in args.server_env):
        parser.error("--server-env takes MP_KEY=VALUE")
    if args.processes is not None and args.processes < 0:
        parser.error(f"--processes {args.processes}: give 0 (one per core) or more")
    if args.processes is not None and args.compare_processes:
        parser.error("--processes and --compare-processes exclude each other; give one")
    if args.quick:
        args.messages, args.paced, args.warmup = (
            min(args.messages, 500),
            min(args.paced, 200),
            min(args.warmup, 50),
        )
        args.quiet_wait = min(args.quiet_wait, 10)

    def on_alarm(_signum, _frame):
        raise TimeoutError(f"the whole run exceeded --timeout {args.timeout:g}s")

    def on_stop(signum, _frame):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the cleanup below finish
        raise BenchError(f"stopped by {signal.Signals(signum).name}")

    signal.signal(signal.SIGALRM, on_alarm)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_stop)
    signal.alarm(max(1, int(args.timeout)))
    workdir = Path(tempfile.mkdtemp(prefix="mp-load-"))
    bench = Bench(args, workdir)
    results: dict[str, dict] = {}
    profile_text = ""
    code = 1
    started = datetime.datetime.now().astimezone()
    print(
        f"MessagePusher load benchmark, {started:%Y-%m-%d %H:%M %Z}; {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}; "
        f"server at commit {source_version()}; "
        f"MessagePusher rate limits OFF (MP_SECURITY__RATE_LIMIT__*=0); Huey peer: SqliteHuey "
        f"synchronous={'FULL (its default)' if args.huey_synchronous == 'default' else 'NORMAL'}, "
        f"8 thread workers, polling delay {args.huey_delay:g}s; workdir {workdir}"
        + (f"; server env {' '.join(args.server_env)}" if args.server_env else ""),
        flush=True,
    )
    try:
        bench.sink = Sink(bench)

        burst = ("burst", args.messages, 32, 0.0)
        paced = ("paced", args.paced, 8, args.rate)
        if args.compare_processes:
            for n in args.compare_processes:
                run_system(
                    bench,
                    results,
                    f"ours{n}",
                    f"MessagePusher --processes {n}",
                    functools.partial(bench.start_ours, n),
                    [burst, paced],
                )
        if not args.skip_bare and not args.compare_processes:
            run_system(
                bench,
                results,
                "bare",
                "bare Falcon+waitress + one SQLite insert",
                bench.start_bare,
                [burst],
            )
        profile = workdir / "profile.txt" if args.profile else None
        if not args.skip_ours and not args.compare_processes:
            run_system(
                bench,
                results,
                "ours",
                "MessagePusher" + (f" --processes {args.processes}" if args.processes else ""),
                functools.partial(bench.start_ours, args.processes),
                [burst, paced],
                profile,
            )
        if profile is not None and not args.skip_ours and not args.compare_processes:
            profile_text = summarize_profile(
                profile,
                getattr(bench, "profile_seconds", 1.0),
                getattr(bench, "thread_cpu_first", {}),
                getattr(bench, "thread_cpu_last", {}),
                args.profile_rate,
            )
        if not args.skip_peer:
            run_system(bench, results, "peer", "Huey peer", bench.start_huey, [burst, paced])
        failed = any(
            r.get("failure") or any(isinstance(v, dict) and v.get("failure") for v in r.values())
            for r in results.values()
        )
        code = 1 if failed else 0
    except (BenchError, TimeoutError, subprocess.TimeoutExpired) as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        code = 1
    finally:
        signal.alarm(0)
        bench.stop_all()
        if results:
            print()
            if args.compare_processes:
                print(compare_report(args.compare_processes, results))
            else:
                print(report(args, results))
            if profile_text:
                print(
                    f"\npy-spy profile of the MessagePusher server during the {args.profile_phase} phase:\n"
                    + profile_text
                )
            if args.json:
                args.json.write_text(
                    json.dumps(
                        {
                            "started": started.isoformat(),
                            "cores": os.cpu_count(),
                            "args": {k: str(v) for k, v in vars(args).items()},
                            "results": results,
                        },
                        indent=2,
                    )
                )
        if args.keep or args.profile:
            print(f"\nkept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
