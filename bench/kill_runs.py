"""What bench/chaos.py and bench/process_kills.py share: their draining and server options,
and the run-then-report tail of their `main`."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from load import BenchError, source_version


def add_drain_and_server_arguments(parser: argparse.ArgumentParser, drain_help: str) -> None:
    parser.add_argument("--drain-timeout", type=float, default=120.0, help=drain_help)
    parser.add_argument(
        "--stall", type=float, default=30.0, help="give up draining after this long idle"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="MP_KEY=VALUE",
        help="extra environment for the server (experiments), repeatable",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments, with every --server-env checked; exits with argparse's usage error."""
    args = parser.parse_args()
    if any("=" not in kv for kv in args.server_env):
        parser.error("--server-env takes MP_KEY=VALUE")
    return args


def run_and_report(
    args: argparse.Namespace,
    title: str,
    prefix: str,
    run: Callable[[argparse.Namespace, Path], dict],
    report: Callable[[dict], str],
    after: Callable[[dict], None] | None = None,
) -> int:
    """Run in a temp dir, print the report; 1 if anything was lost or stuck (or the run failed)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    print(
        f"{title}; {os.cpu_count()} cores ({platform.machine()}), "
        f"Python {platform.python_version()}, server at commit {source_version()}, "
        f"load average {os.getloadavg()[0]:.1f}; workdir {workdir}",
        flush=True,
    )
    try:
        result = run(args, workdir)
    except BenchError as exc:
        print(f"{title}: the run failed: {exc}", file=sys.stderr)
        return 1
    print()
    print(report(result))
    if after is not None:
        after(result)
    if args.keep:
        print(f"\nkept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if result["lost"] or result["stuck"] else 0
