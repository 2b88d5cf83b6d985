"""Which packages MessagePusher needs that this Python lacks, read from installed metadata.

Imports none of them, so the check costs milliseconds and start-up stays fast.
"""

from __future__ import annotations

import functools
import re
import shlex
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = "messagepusher"
# A Requires-Dist line: the name, then [extras]; versions and the marker after ";" follow.
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA_ONLY = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")

Requires = Callable[[str], "list[str] | None"]


def normalize(name: str) -> str:
    """A distribution or extra name as PEP 503/685 compare them: jusText, lxml_html_clean."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(line: str) -> tuple[str, frozenset[str], str, str | None] | None:
    """(name, extras asked for, the requirement without its marker, the extra it belongs to).

    None for a line whose marker tests the platform or Python: evaluating those needs
    `packaging`, which is not ours to require, so pip alone judges them.
    """
    spec, _, marker = line.partition(";")
    match = _NAME.match(spec)
    if match is None:
        return None
    extras = frozenset(normalize(e) for e in (match.group(2) or "").split(",") if e.strip())
    marker = marker.strip()
    if not marker:
        return match.group(1), extras, spec.strip(), None
    only = _EXTRA_ONLY.fullmatch(marker)
    if only is None:
        return None
    return match.group(1), extras, spec.strip(), normalize(only.group(1))


def missing(requires: Requires, root: str = ROOT) -> list[tuple[str, str]]:
    """Every requirement reachable from `root` whose distribution is absent, as (spec, asked by).

    Pure: `requires(name)` gives a distribution's Requires-Dist lines, or None when it is not
    installed. Extras are followed the way pip should follow them, with names normalised:
    pip before 23.3 did not, and so left lxml[html_clean]'s cleaner out.
    """
    if requires(root) is None:
        return []  # imported without metadata (a checkout on PYTHONPATH): nothing to check against
    found: dict[str, tuple[str, str]] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    while todo:
        name, extras = todo.pop()
        if (normalize(name), extras) in seen:
            continue
        seen.add((normalize(name), extras))
        for line in requires(name) or []:
            parsed = _parse(line)
            if parsed is None or (parsed[3] is not None and parsed[3] not in extras):
                continue
            dep, dep_extras, spec, _ = parsed
            if requires(dep) is None:
                found.setdefault(normalize(dep), (spec, name))
            else:
                todo.append((dep, dep_extras))
    return list(found.values())


def installed_requires(name: str) -> list[str] | None:
    """The Requires-Dist lines of an installed distribution, None when it is not installed.

    Runs in the caller's thread; reads metadata files only, and of METADATA only the headers:
    parsing whole files (long descriptions included) took several times as long. Unreadable
    metadata counts as not installed, since pip would have to reinstall it either way.
    """
    try:
        dist = metadata.distribution(name)
        text = dist.read_text("METADATA")
        if text is None:  # an egg-info install: let importlib.metadata read requires.txt
            return dist.requires or []
    except (metadata.PackageNotFoundError, OSError, ValueError):
        return None
    headers = text.split("\n\n", 1)[0]
    return [
        line.partition(":")[2].strip()
        for line in headers.splitlines()
        if line.startswith("Requires-Dist:")
    ]


def problem(repo: Path, python: str = sys.executable) -> str | None:
    """One line naming every missing package and the command that installs them, or None.

    Runs in the main thread before anything else is imported; never raises for a broken
    install, which is what it reports.
    """
    gaps = missing(functools.cache(installed_requires))
    if not gaps:
        return None
    lock = repo / "requirements.lock"
    return explain(gaps, python, lock if lock.is_file() else None)


def explain(gaps: list[tuple[str, str]], python: str, lock: Path | None) -> str:
    """The error line for `missing`'s answer (pure): the packages by name, then the fix.

    Missing dependencies are installed by name: reinstalling the project with the same old pip
    would leave them out again, and would turn a developer's editable install into a copy.
    """
    pin = f"-c {shlex.quote(str(lock))} " if lock else ""
    named = ", ".join(f"{spec!r} (needed by {asked_by})" for spec, asked_by in gaps)
    specs = " ".join(shlex.quote(spec) for spec, _ in gaps)
    return (
        f"error: {'package' if len(gaps) == 1 else 'packages'} {named} missing from {python};"
        f" install with: {shlex.quote(python)} -m pip install {pin}{specs}"
    )
