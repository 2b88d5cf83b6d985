"""The http/ folder must never shadow the standard library's http package."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

from support.server import REPO

STDLIB = sysconfig.get_paths()["stdlib"]


def test_importing_the_app_keeps_http_client_the_standard_librarys():
    import http.client

    import messagepusher.http.app  # noqa: F401

    assert http.client.__file__.startswith(STDLIB)
    assert not (REPO / "http" / "__init__.py").exists()


def test_running_main_py_from_the_repo_root_keeps_http_client_the_standard_librarys():
    probe = (
        "import runpy, sys; sys.argv = ['main.py', 'check-config'];"
        "g = runpy.run_path('main.py', run_name='probe'); g['main'](['check-config']);"
        "import http.client, requests; print('HTTP_CLIENT=' + http.client.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONSAFEPATH": ""},
    )
    assert done.returncode == 0, done.stderr
    line = [x for x in done.stdout.splitlines() if x.startswith("HTTP_CLIENT=")][0]
    assert line.removeprefix("HTTP_CLIENT=").startswith(STDLIB)
    assert sys.path[0] != str(REPO / "http")
