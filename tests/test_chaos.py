"""kill -9 under load, five times: no acknowledged message is lost, none is left unfinished.

Runs bench/chaos.py (the real server, 8 client threads, a real webhook sink) with a short
bound; the 20-kill run of docs/benchmarks.md is the same program with its defaults.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.server import REPO

pytestmark = pytest.mark.xdist_group("heavy")


def test_five_kill_9s_under_8_clients_lose_no_acknowledged_message_and_leave_none_unfinished(
    tmp_path,
):
    out = tmp_path / "chaos.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "chaos.py"),
            "--kills",
            "5",
            "--clients",
            "8",
            "--min-run",
            "0.3",
            "--max-run",
            "1.0",
            "--drain-timeout",
            "90",
            "--stall",
            "20",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["restart_to_ready"]) == 5
    assert result["acknowledged"] >= 5 * 8, result  # every round had its own 202s
    assert result["lost"] == [], f"acknowledged but never arrived: {result['lost'][:20]}"
    assert result["stuck"] == {}, f"left in a non-final state: {result['stuck']}"
    assert result["arrived"] == result["acknowledged"]
    assert set(result["statuses"]) == {"delivered"}, result["statuses"]
    assert result["final_stop_exit_code"] == 0
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
