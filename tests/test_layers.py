"""Imports point one way: read from the sources' syntax trees.

    http -> actors, operations -> messages, outbound, accounts -> supervisor

actors and operations sit side by side, as do the three domain packages; main.py is the
composition root and may import every layer; nothing else reaches up.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (folder, packages its modules must not import)
ABOVE_DOMAIN = ("messagepusher.http", "messagepusher.actors", "messagepusher.operations")
DOMAIN = ("messagepusher.messages", "messagepusher.outbound", "messagepusher.accounts")
FORBIDDEN = {
    "supervisor": ABOVE_DOMAIN + DOMAIN,
    "messages": ABOVE_DOMAIN,
    "outbound": ABOVE_DOMAIN,
    "accounts": ABOVE_DOMAIN,
    "actors": ("messagepusher.http",),
    "operations": ("messagepusher.http",),
}


def imported_modules(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """(line, names) of every import statement, function-level and TYPE_CHECKING ones too.

    `from messagepusher import http` names both messagepusher and messagepusher.http.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, [alias.name]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found.append((node.lineno, names))
    return found


def violations(root: Path) -> list[str]:
    """'path:line imports name' for every import under `root` that points up a layer."""
    out = []
    for folder, forbidden in FORBIDDEN.items():
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, names in imported_modules(tree):
                upward = [
                    n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden)
                ]
                if upward:
                    out.append(f"{path.relative_to(root)}:{line} imports {upward[0]}")
    return sorted(out)


def test_no_module_imports_a_layer_above_its_own():
    assert violations(REPO) == []


def test_the_check_finds_an_upward_import_in_every_spelling(tmp_path):
    (tmp_path / "supervisor").mkdir()
    (tmp_path / "actors" / "channels").mkdir(parents=True)
    (tmp_path / "supervisor" / "runtime.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from messagepusher.actors.ingest import IngestClient\n"
        "def build():\n"
        "    import messagepusher.http.app\n"
    )
    (tmp_path / "actors" / "channels" / "mail.py").write_text(
        "from messagepusher import http\nfrom messagepusher.supervisor import db\n"
    )
    (tmp_path / "actors" / "fine.py").write_text("from messagepusher.supervisor.db import x\n")
    (tmp_path / "messages").mkdir()
    (tmp_path / "messages" / "store.py").write_text(
        "from messagepusher.accounts import users\nfrom messagepusher.operations import reports\n"
    )
    assert violations(tmp_path) == [
        "actors/channels/mail.py:1 imports messagepusher.http",
        "messages/store.py:2 imports messagepusher.operations",
        "supervisor/runtime.py:3 imports messagepusher.actors.ingest",
        "supervisor/runtime.py:5 imports messagepusher.http.app",
    ]
