"""Mutation testing of the pure policy and state modules with cosmic-ray (`make mutation`).

Owns the table of mutated modules, the fast unit tests that must kill their mutants, and the score.

Run from the repository root: `.venv/bin/python tests/mutation.py [module.py ...]`. cosmic-ray
rewrites each module in place (the editable install imports it from the working tree, which is
why an in-place tool suits the package-dir layout), runs the module's unit tests once per
mutant, and puts the file back; this driver also puts it back if it is interrupted. Do not run
other tests in the same checkout meanwhile: they would import the mutants.
"""

from __future__ import annotations

import argparse
import ast
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

ROOT = Path(__file__).resolve().parent.parent
MIN_SCORE = 85.0  # percent of mutants killed over all modules; below it `make mutation` fails


@dataclass(frozen=True)
class Target:
    module: str
    tests: tuple[str, ...]
    pytest_args: tuple[str, ...] = ()
    # Mutate only these top-level definitions ("Class", "Class.method", "function"); () = all.
    only: tuple[str, ...] = ()


TARGETS = (
    Target("messages/lifecycle.py", ("tests/test_lifecycle.py",)),
    # The store's decisions: which entries follow a stage, what a batch of outcomes makes
    # final, fallbacks, retry and cancel. Its plain inserts and reads are left out for time.
    Target(
        "messages/store.py",
        ("tests/test_store.py",),
        only=(
            "stage_entries",
            "SendHandoff.take",
            "LeasedSends",
            "_lessees",
            "SendOutcomes",
            "_write_finals",
            "finish_if_final",
            "retry",
            "cancel",
            "reopen_deliveries",
            "cancel_delivery",
        ),
    ),
    Target("supervisor/retry.py", ("tests/test_retry_policy.py",)),
    # When a pool's finished jobs are written at once or wait for company.
    Target(
        "supervisor/actor.py", ("tests/test_pool_actor.py",), only=("write_back_now", "FlushSignal")
    ),
    # What the SQLite write lock's times sum, and the one writer connection lent to its holder;
    # the lock itself is tested across processes.
    Target(
        "supervisor/db.py",
        ("tests/test_process_write_lock.py",),
        ("-k", "lock_times or connection"),
        only=(
            "WriteLockTimes",
            "SerializedSqliteDatabase._borrow_writer",
            "SerializedSqliteDatabase._return_writer",
            "SerializedSqliteDatabase.close",
        ),
    ),
    Target("supervisor/restart_policy.py", ("tests/test_restart_policy.py",)),
    Target("accounts/ratelimit.py", ("tests/test_ratelimit.py",)),
    Target("outbound/netguard.py", ("tests/test_netguard.py",)),
    # The claim, ack and nack rules. They are the same on both databases; SQLite keeps a
    # run to minutes. Recovery, defer and lease extension are left out for time (docs/testing.md).
    Target(
        "supervisor/mailbox.py",
        ("tests/test_mailbox.py",),
        ("-k", "not postgres"),
        only=("Mailbox.claim", "Mailbox.ack", "Mailbox.ack_many", "Mailbox.nack"),
    ),
    Target("http/routes.py", ("tests/test_routes.py",)),
    # The permission check and the owner scoping; key and session loading have their own tests.
    Target(
        "http/auth.py",
        ("tests/test_auth.py",),
        only=("Principal", "AuthMiddleware", "owner_filter", "get_owned"),
    ),
)


def pytest_command(target: Target) -> str:
    # No conftest (it loads the server fixtures) and no xdist: a third less time per mutant.
    args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    args += ["--noconftest", "-p", "no:xdist"]
    return shlex.join([*args, *target.tests, *target.pytest_args])


def line_ranges(path: Path, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """First and last line of each named top-level definition or method."""
    found: dict[str, tuple[int, int]] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            found[node.name] = (node.lineno, node.end_lineno or node.lineno)
        for child in node.body if isinstance(node, ast.ClassDef) else ():
            if isinstance(child, ast.FunctionDef):
                found[f"{node.name}.{child.name}"] = (
                    child.lineno,
                    child.end_lineno or child.lineno,
                )
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"{path}: no definition {missing}; update TARGETS in {__file__}")
    return [found[n] for n in names]


def annotations(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Start and end (line, column) of every type annotation in the module.

    Every module here has `from __future__ import annotations`: an annotation is a string
    that nothing evaluates, so a mutant inside one (`int | None` to `int & None`) is
    equivalent by construction and is not run.
    """
    spans = []
    for node in ast.walk(ast.parse(path.read_text())):
        found = []
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        if isinstance(node, ast.FunctionDef) and node.returns is not None:
            found.append(node.returns)
        spans += [
            ((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0))
            for a in found
        ]
    return spans


def skip(session: Path, path: Path, only: tuple[str, ...]) -> None:
    """Mark as skipped the mutants in annotations and outside `only`; `exec` does not run them."""
    spans = annotations(path)
    ranges = line_ranges(path, only) if only else [(1, sys.maxsize)]

    def wanted(start: tuple[int, int]) -> bool:
        in_annotation = any(lo <= tuple(start) < hi for lo, hi in spans)
        return not in_annotation and any(lo <= start[0] <= hi for lo, hi in ranges)

    result = WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="not mutated on purpose")
    with use_db(str(session), WorkDB.Mode.open) as db:
        unwanted = [
            item.job_id for item in db.pending_work_items if not wanted(item.mutations[0].start_pos)
        ]
        db.set_multiple_results(unwanted, result)


@dataclass
class Score:
    module: str
    killed: int
    survived: list[str]
    incompetent: int
    seconds: float

    @property
    def total(self) -> int:
        return self.killed + len(self.survived) + self.incompetent

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 100.0


def run(target: Target, workdir: Path) -> Score:
    """Baseline, init, exec and tally one module; the module is restored whatever happens."""
    path = ROOT / target.module
    original = path.read_bytes()
    command = pytest_command(target)
    started = time.monotonic()
    baseline = subprocess.run(shlex.split(command), cwd=ROOT, capture_output=True, text=True)
    if baseline.returncode != 0:
        raise SystemExit(f"{target.module}: the unmutated tests fail:\n{baseline.stdout}")
    # Generous: a mutant that loops forever is killed by the timeout, a slow machine is not.
    timeout = max(30.0, 20 * (time.monotonic() - started))
    name = target.module.replace("/", "_").removesuffix(".py")
    config, session = workdir / f"{name}.toml", workdir / f"{name}.sqlite"
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {str(path)!r}\n"
        f"timeout = {timeout:.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {command!r}\n"
        '[cosmic-ray.distributor]\nname = "local"\n'
    )
    cosmic_ray = str(Path(sys.executable).with_name("cosmic-ray"))
    try:
        subprocess.run([cosmic_ray, "init", str(config), str(session)], cwd=ROOT, check=True)
        skip(session, path, target.only)
        subprocess.run([cosmic_ray, "exec", str(config), str(session)], cwd=ROOT, check=True)
    finally:
        if path.read_bytes() != original:
            path.write_bytes(original)
    return tally(target.module, session, time.monotonic() - started)


def tally(module: str, session: Path, seconds: float) -> Score:
    score = Score(module, 0, [], 0, seconds)
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.worker_outcome == WorkerOutcome.NO_TEST:
                continue
            if result.test_outcome == TestOutcome.KILLED:
                score.killed += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                spec = item.mutations[0]
                score.survived.append(
                    f"{module}:{spec.start_pos[0]} {spec.operator_name} #{spec.occurrence}\n"
                    + "\n".join(
                        line
                        for line in (result.diff or "").splitlines()
                        if line[:1] in "+-" and line[:3] not in ("---", "+++")
                    )
                )
            else:
                score.incompetent += 1
    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="only these modules (paths as in TARGETS)")
    args = parser.parse_args(argv)
    unknown = set(args.modules) - {t.module for t in TARGETS}
    if unknown:
        parser.error(f"not in TARGETS: {', '.join(sorted(unknown))}")
    chosen = [t for t in TARGETS if not args.modules or t.module in args.modules]
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        scores = [run(target, Path(tmp)) for target in chosen]
    print()
    for score in scores:
        for survivor in score.survived:
            print(f"SURVIVED {survivor}")
    print(f"\n{'module':32} {'killed':>7} {'survived':>8} {'other':>5} {'score':>7} {'time':>6}")
    for s in scores:
        print(
            f"{s.module:32} {s.killed:7} {len(s.survived):8} {s.incompetent:5} "
            f"{s.percent:6.1f}% {s.seconds:5.0f}s"
        )
    killed = sum(s.killed for s in scores)
    total = sum(s.total for s in scores)
    overall = 100.0 * killed / total if total else 100.0
    print(f"{'overall':32} {killed:7} {total - killed:8} {'':5} {overall:6.1f}%")
    if overall < MIN_SCORE:
        print(f"mutation score {overall:.1f}% is below {MIN_SCORE:.0f}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
