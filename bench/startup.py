"""Start-up benchmark: seconds from `python main.py serve` to GET /readyz answering 200.

Restarts one server on one data dir N times (a first, uncounted start creates the schema and
the admin) and prints median/min/max, the CPU the process used to get there, and the same for
a bare Falcon+waitress process (the floor of any service on this stack) started in turn.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from load import PY, ROOT, Bench, BenchError, Child, free_port, http_call, source_version

BENCH = Path(__file__).resolve().parent
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def wait_ready(port: int, child: Child, path: str, timeout: float) -> float:
    """Poll `path` every 5 ms until it answers 200; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check()
        try:
            if http_call(port, "GET", path, timeout=2)[0] == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    raise BenchError(f"{child.name} did not answer {path} within {timeout:g}s:\n{child.tail()}")


def cpu_of(child: Child) -> float:
    times = psutil.Process(child.pid).cpu_times()
    return times.user + times.system


def start_ours(
    workdir: Path, data: Path, run: int, env: dict[str, str], flags: list[str], timeout: float
) -> tuple[float, float, Child]:
    """Start MessagePusher and wait for /readyz: (seconds to ready, CPU seconds, the child)."""
    port = free_port()
    started = time.monotonic()
    child = Child(
        f"server-{run}",
        [PY, *flags, str(ROOT / "main.py"), "serve"],
        workdir,
        {**env, "MP_DATA_DIR": str(data), "MP_SERVER__PORT": str(port)},
    )
    ready = wait_ready(port, child, "/readyz", timeout)
    return ready - started, cpu_of(child), child


def start_bare(workdir: Path, run: int, timeout: float) -> tuple[float, float, Child]:
    """Start the bare Falcon+waitress peer and wait until it answers a request."""
    ready_file = workdir / f"bare-{run}.port"
    started = time.monotonic()
    child = Child(
        f"bare-{run}",
        [
            PY,
            str(BENCH / "bare_peer.py"),
            "--ready",
            str(ready_file),
            "--db",
            str(workdir / "bare.db"),
        ],
        workdir,
    )
    deadline = started + timeout
    while not ready_file.exists():
        child.check()
        if time.monotonic() > deadline:
            raise BenchError(f"bare peer did not start within {timeout:g}s:\n{child.tail()}")
        time.sleep(0.005)
    # Its only route is POST /api/v1/messages: a GET answering 405 proves it serves.
    port = int(ready_file.read_text())
    while http_call(port, "GET", "/api/v1/messages", timeout=2)[0] != 405:
        time.sleep(0.005)
    ready = time.monotonic()
    return ready - started, cpu_of(child), child


def import_table(log: str, top: int) -> list[str]:
    """The `top` slowest imports of one -X importtime log, cumulative, nested by indentation."""
    rows = []
    for line in log.splitlines():
        match = IMPORT_LINE.match(line)
        if match:
            rows.append((int(match.group(2)), len(match.group(3)), match.group(4)))
    total = sum(int(m.group(1)) for m in map(IMPORT_LINE.match, log.splitlines()) if m)
    shown = sorted((r for r in rows if r[1] <= 3), key=lambda r: -r[0])[:top]
    lines = [f"{len(rows)} modules imported, {total / 1e6:.3f}s of import time in all"]
    lines += [f"  {cum / 1000:8.1f} ms  {'  ' * (depth - 1)}{name}" for cum, depth, name in shown]
    return lines


def figures(values: list[float], digits: int = 3) -> str:
    return (
        f"{statistics.median(values):.{digits}f}  "
        f"{min(values):.{digits}f}..{max(values):.{digits}f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--restarts", type=int, default=10, help="counted restarts")
    parser.add_argument("--skip-bare", action="store_true", help="do not start the bare peer")
    parser.add_argument(
        "--importtime",
        type=int,
        default=0,
        metavar="TOP",
        help="one more start under python -X importtime; print its TOP slowest imports",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the server (experiments), repeatable",
    )
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="do not byte-compile the project first (pip install does; an editable install "
        "run with PYTHONDONTWRITEBYTECODE=1 compiles every module at every start)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="first wait up to this long for other processes to calm down (0: don't)",
    )
    parser.add_argument(
        "--quiet-cores",
        type=float,
        default=0.15,
        help="'calm': other processes use fewer cores than this for 3 s",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="per start, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args()
    if any("=" not in kv for kv in args.server_env):
        parser.error("--server-env takes KEY=VALUE")
    env = {
        "MP_ADMIN_PASSWORD": "bench-Admin-pass-1",
        "MP_LOGGING__LEVEL": "WARNING",
        **dict(kv.split("=", 1) for kv in args.server_env),
    }
    if not args.no_compile:
        compiled = all(
            compileall.compile_dir(ROOT / name, quiet=1)
            for name in ("actors", "supervisor", "http")
        ) and compileall.compile_file(ROOT / "main.py", quiet=1)
        if not compiled:
            print("benchmark failed: the project does not byte-compile", file=sys.stderr)
            return 1
    workdir = Path(tempfile.mkdtemp(prefix="mp-startup-"))
    data = workdir / "data"
    print(
        f"MessagePusher start-to-ready, {args.restarts} restarts on one data dir; "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, server at commit {source_version()}, "
        f"load average {os.getloadavg()[0]:.1f}; "
        + ("modules compiled at each start" if args.no_compile else "byte-compiled first")
        + (f"; server env {' '.join(args.server_env)}" if args.server_env else ""),
        flush=True,
    )
    if args.quiet_wait > 0:
        others = Bench(args, workdir).wait_quiet()
        print(f"other processes used {others:.2f} cores just before the first start", flush=True)
    ours: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    children: list[Child] = []
    try:
        _, _, child = start_ours(workdir, data, 0, env, [], args.timeout)  # schema and admin
        children.append(child)
        child.stop()
        for run in range(1, args.restarts + 1):
            seconds, cpu, child = start_ours(workdir, data, run, env, [], args.timeout)
            children.append(child)
            child.stop()
            ours.append((seconds, cpu))
            if not args.skip_bare:
                seconds, cpu, child = start_bare(workdir, run, args.timeout)
                children.append(child)
                child.stop()
                bare.append((seconds, cpu))
        table = None
        if args.importtime:
            _, _, child = start_ours(
                workdir, data, args.restarts + 1, env, ["-X", "importtime"], args.timeout
            )
            children.append(child)
            child.stop()
            table = import_table(child.log_path.read_text(errors="replace"), args.importtime)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in children:
            child.stop()
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"\n{'':34}{'median  min..max':>22}")
    print(f"{'MessagePusher start-to-ready, s':34}{figures([s for s, _ in ours]):>22}")
    print(f"{'  CPU used to get there, s':34}{figures([c for _, c in ours]):>22}")
    if bare:
        print(f"{'bare Falcon+waitress, s':34}{figures([s for s, _ in bare]):>22}")
        print(f"{'  CPU used to get there, s':34}{figures([c for _, c in bare]):>22}")
        ratios = [a[0] / b[0] for a, b in zip(ours, bare, strict=True)]
        print(f"{'ratio MessagePusher / bare':34}{figures(ratios, 2):>22}")
    if table:
        print("\npython -X importtime, one more start:")
        print("\n".join(table))
    if args.keep:
        print(f"\nkept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
