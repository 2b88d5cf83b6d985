"""Every documented install, done as the docs say on a clean copy, serves a fetched summary.

Also main.py's start-up check (supervisor/install_check.py): a missing package is one line.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import requests
from fakes.pages import PageServer
from fakes.sink import Sink
from support.ops import until
from support.server import ADMIN_PASSWORD, LISTENING, REPO

from messagepusher.supervisor.install_check import explain, missing, normalize

LOCK = REPO / "requirements.lock"
SOURCES = [REPO / "main.py", REPO / "actors", REPO / "supervisor", REPO / "http"]


def _graph(**packages: list[str]):
    """A fake set of installed distributions: name -> its Requires-Dist lines."""
    table = {normalize(name): lines for name, lines in packages.items()}
    return lambda name: table.get(normalize(name))


def test_a_package_behind_a_third_partys_extra_is_missing_when_pip_skipped_that_extra():
    requires = _graph(
        messagepusher=["trafilatura>=1.8,<3"],
        trafilatura=["justext>=3.0.1"],
        jusText=["lxml[html_clean]>=4.4.2"],
        lxml=['lxml_html_clean; extra == "html-clean"', 'cssselect>=0.7; extra == "cssselect"'],
    )
    assert missing(requires) == [("lxml_html_clean", "lxml")]


def test_platform_markers_and_our_own_extras_are_left_to_pip():
    requires = _graph(
        messagepusher=[
            'pywin32>=300; sys_platform == "win32"',
            'pytest>=8; extra == "test"',
            "pykka>=4.1,<5",
        ],
        pykka=[],
    )
    assert missing(requires) == []


def test_a_declared_package_that_is_absent_is_named_with_its_version_range_once():
    requires = _graph(messagepusher=["pyotp>=2.9,<3", "pykka"], pykka=["PyOTP"])
    assert missing(requires) == [("pyotp>=2.9,<3", "messagepusher")]


def test_the_error_is_one_line_naming_each_package_and_the_command_that_installs_them():
    line = explain(
        [("lxml_html_clean", "lxml"), ("pyotp>=2.9,<3", "messagepusher")],
        "/srv/mp/.venv/bin/python",
        Path("/srv/mp/requirements.lock"),
    )
    assert line == (
        "error: packages 'lxml_html_clean' (needed by lxml), 'pyotp>=2.9,<3' (needed by"
        " messagepusher) missing from /srv/mp/.venv/bin/python; install with:"
        " /srv/mp/.venv/bin/python -m pip install -c /srv/mp/requirements.lock"
        " lxml_html_clean 'pyotp>=2.9,<3'"
    )


def _metadata(folder: Path, name: str, version: str, *requires: str) -> None:
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n\nA long description.\n")


def test_main_refuses_to_serve_with_one_line_when_an_extras_package_is_missing(tmp_path):
    """main.py beside metadata in which a dependency's extra names an absent package."""
    shutil.copy(REPO / "main.py", tmp_path / "main.py")
    shutil.copy(LOCK, tmp_path / "requirements.lock")
    _metadata(tmp_path, "messagepusher", "0.1.0", "pykka>=4.1", "fake-parent[html_clean]")
    _metadata(tmp_path, "fake-parent", "1.0", 'fake_html_cleaner>=1; extra == "html-clean"')
    done = subprocess.run(
        [sys.executable, str(tmp_path / "main.py"), "serve"],
        cwd=tmp_path,
        env={**os.environ, "MP_DATA_DIR": str(tmp_path / "data"), "MP_SERVER__PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert done.stderr == (
        f"error: package 'fake_html_cleaner>=1' (needed by fake-parent) missing from"
        f" {sys.executable}; install with: {sys.executable} -m pip install -c"
        f" {tmp_path / 'requirements.lock'} 'fake_html_cleaner>=1'\n"
    )
    assert not (tmp_path / "data").exists()


def test_main_names_the_command_when_messagepusher_itself_is_not_installed(tmp_path):
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(REPO / "main.py"), "check-config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert done.stderr == (
        f"error: package 'messagepusher' is not installed in {sys.executable}; install it with:"
        f" {sys.executable} -m pip install -c {LOCK} {REPO}\n"
    )


def _imported_top_levels(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    files = [p for path in paths for p in ([path] if path.is_file() else path.rglob("*.py"))]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"messagepusher"}


def test_every_package_the_service_imports_is_a_declared_dependency():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {normalize(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group(0)) for r in declared}
    owners = metadata.packages_distributions()
    undeclared = {
        module: owners.get(module)
        for module in _imported_top_levels(SOURCES)
        if not {normalize(d) for d in owners.get(module, [])} & names
    }
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"


# The installs the docs describe: label -> (what pip installs, with the lock or not).
INSTALLS = {
    "source": ("source", False),
    "source+lock": ("source", True),
    "wheel": ("wheel", False),
    "wheel+lock": ("wheel", True),
}
MESSAGE_TIMEOUT = 90.0  # a fetch, a summary and a send take seconds; this is a contended box


@dataclass
class Installed:
    venv: Path
    log: str
    ok: bool

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")


def _run(cmd: list[str], cwd: Path) -> tuple[bool, str]:
    done = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL
    )
    return (
        done.returncode == 0,
        f"$ {' '.join(cmd)}  (exit {done.returncode})\n{done.stdout}{done.stderr}",
    )


def _clean_copy(dest: Path) -> Path:
    """The files a fresh clone would have (tracked, and new ones not ignored) as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def _install(root: Path, label: str, target: Path | None) -> Installed:
    """A venv made and filled as docs/operations.md says: no pip upgrade, pip check at the end.

    Runs in a pool thread; pip's own cache keeps the repeats quick. `target` is None when the
    wheel could not be built (the build's log, added by the caller, says why).
    """
    venv = root / f"venv-{label}"
    if target is None:
        return Installed(venv, "no wheel to install", False)
    pip = str(venv / "bin" / "pip")
    pin = ["-c", str(LOCK)] if INSTALLS[label][1] else []
    log = []
    for cmd in (
        [sys.executable, "-m", "venv", str(venv)],
        [pip, "--version"],
        [pip, "install", *pin, str(target)],
        [pip, "check"],
    ):
        ok, out = _run(cmd, root)
        log.append(out)
        if not ok:
            return Installed(venv, "\n".join(log), False)
    return Installed(venv, "\n".join(log), True)


@pytest.fixture(scope="module")
def installs(tmp_path_factory) -> dict[str, Installed]:
    """All four installs; the wheel is built while the two source installs run."""
    root = tmp_path_factory.mktemp("install")
    kinds = {label: kind for label, (kind, _) in INSTALLS.items()}
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores: more only slows the rest down
        made = {
            label: pool.submit(_install, root, label, _clean_copy(root / f"src-{label}"))
            for label, kind in kinds.items()
            if kind == "source"
        }
        build = [sys.executable, "-m", "build", "--outdir", str(root / "dist")]
        built, build_log = _run([*build, str(_clean_copy(root / "src-build"))], root)
        wheel = next((root / "dist").glob("messagepusher-*.whl"), None) if built else None
        for label, kind in kinds.items():
            if kind == "wheel":
                made[label] = pool.submit(_install, root, label, wheel)
        results = {label: future.result() for label, future in made.items()}
    for label, kind in kinds.items():
        if kind == "wheel":
            results[label].log = build_log + "\n" + results[label].log
    return results


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A clean copy nobody builds in: its main.py is what every install runs."""
    return _clean_copy(tmp_path_factory.mktemp("pristine"))


def _service_env() -> dict[str, str]:
    """The caller's environment without any MessagePusher setting, as a new operator has it."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MP_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "NOTIFY_SOCKET")
    }
    return {
        **keep,
        "MP_SERVER__PORT": "0",
        "MP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
        "PYTHONUNBUFFERED": "1",
    }


def _final(message: dict) -> dict | None:
    return message if message.get("status") in ("delivered", "partially_failed", "failed") else None


def _start(cmd: list[str], workdir: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, env=_service_env(), stdout=log, stderr=log)

    def listening() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        match = LISTENING.search(log_path.read_text(errors="replace"))
        return match and f"http://127.0.0.1:{match.group(1)}"

    return proc, until(listening, 60, "the server listening")


@pytest.mark.xdist_group("install")
@pytest.mark.timeout(1800)  # the first one waits for all four installs: minutes on a busy box
@pytest.mark.parametrize("label", list(INSTALLS))
def test_an_install_as_documented_passes_pip_check_and_delivers_a_fetched_summary(
    label, installs, pristine, tmp_path
):
    installed = installs[label]
    assert installed.ok, installed.log
    shipped = subprocess.run(
        [sys.executable, "-c", "import ensurepip; print(ensurepip.version())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert f"pip {shipped} from" in installed.log, installed.log
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    main = [installed.python, str(pristine / "main.py")]
    proc, url = _start([*main, "serve"], workdir, tmp_path / "server.log")
    pages, sink = PageServer(), Sink()
    try:
        until(
            lambda: requests.get(url + "/readyz", timeout=10).status_code == 200, 60, "/readyz 200"
        )
        key = subprocess.run(
            [*main, "key", "create", "--user", "admin"],
            cwd=workdir,
            env=_service_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert key.returncode == 0, key.stderr
        api = requests.Session()
        api.headers["Authorization"] = "Bearer " + key.stdout.strip().splitlines()[-1]
        hook = {"name": "hook", "type": "webhook", "config": {"url": sink.url + "/in"}}
        assert api.post(url + "/api/v1/channels", json=hook, timeout=30).status_code == 201
        sent = api.post(
            url + "/api/v1/messages",
            json={
                "title": "Report",
                "url": pages.url + "/article",
                "ai": {"task": "summarize"},
                "channels": ["hook"],
            },
            timeout=30,
        )
        assert sent.status_code == 202, sent.text
        message = f"{url}/api/v1/messages/{sent.json()['id']}"
        done = until(lambda: _final(api.get(message, timeout=30).json()), MESSAGE_TIMEOUT, "final")
        assert done["status"] == "delivered", done
        summary = done["ai"]["result"]
        assert done["ai"]["status"] == "ok" and "storage" in summary.lower(), done["ai"]
        body = sink.received()[0]["body"]
        assert body["fetched"]["title"] == "Quarterly Storage Report"
        assert body["ai"]["result"] == summary
        assert (workdir / "data" / "messagepusher.db").is_file()
    finally:
        pages.close()
        sink.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == 0, (tmp_path / "server.log").read_text()

    removed, out = _run(
        [installed.python, "-m", "pip", "uninstall", "-y", "lxml-html-clean"], tmp_path
    )
    assert removed, out
    refused = subprocess.run(
        [*main, "serve"],
        cwd=workdir,
        env=_service_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 3, refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "'lxml-html-clean>=" in refused.stderr and "-m pip install" in refused.stderr
