"""serve --processes N: the root supervisor, its workers, kill -9 of either, hangs, a clean stop.

Real processes on a real socket and SQLite file; the pure decisions of supervisor/processes.py first.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
import requests
from support.notify import NotifySocket
from support.ops import db_file, rows, until, webhook
from support.server import REPO

from messagepusher.supervisor.processes import Slot, describe_exit, worker_count
from messagepusher.supervisor.zygote import assert_single_threaded

pytestmark = pytest.mark.xdist_group("heavy")

# Small beats so that hangs and stale rows show within seconds; a generous start window.
FAST = {
    "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
    "MP_SERVER__PROCESSES": "2",
    "MP_SERVER__HEARTBEAT_SECONDS": "0.5",
    "MP_SERVER__HEARTBEAT_TIMEOUT_SECONDS": "3",
    "MP_SERVER__WORKER_START_SECONDS": "90",
    "MP_SHUTDOWN_GRACE_SECONDS": "5",
    "MP_SUPERVISOR__MAX_RESTARTS": "20",
    "MP_RETRY__BASE_DELAY_SECONDS": "0.2",
}
# A replaced worker serves again well within this (forked from the zygote: about 0.5 s on the
# loaded 2-core box; a generous bound, the figures are bench/process_kills.py's business).
SERVING_AGAIN_SECONDS = 30


# --- pure decisions -------------------------------------------------------------------------


def test_zero_processes_means_one_per_core_and_never_none():
    assert worker_count(0, 8) == 8
    assert worker_count(0, None) == 1
    assert worker_count(3, 8) == 3


def test_an_exit_is_described_by_its_code_or_its_signal():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by signal SIGKILL"
    assert describe_exit(0) == "exit code 0"


def _running_slot(now: float = 100.0) -> Slot:
    slot = Slot(1, proc=object(), started=now, last_beat=now, state="starting")
    slot.take_lines(b"READY=1\nSTATUS=listening\n", now)
    return slot


def test_a_worker_is_hung_only_once_its_beats_stop_for_longer_than_the_timeout():
    slot = _running_slot()
    assert slot.state == "running" and slot.ready
    assert slot.overdue(102.9, heartbeat_timeout=3, start_timeout=60) is None
    assert "no heartbeat" in slot.overdue(103.1, heartbeat_timeout=3, start_timeout=60)
    slot.take_lines(b"WATCHDOG=1\nSTATUS=ready\n", 103.0)  # other threads' lines are no beat
    assert slot.overdue(103.1, 3, 60)
    slot.take_lines(b"BE", 103.2)  # half a line is no beat
    assert slot.overdue(103.2, 3, 60)
    slot.take_lines(b"AT\n", 103.3)
    assert slot.overdue(103.4, 3, 60) is None


def test_a_starting_worker_has_the_start_window_and_its_ready_counts_as_a_beat():
    slot = Slot(1, proc=object(), started=100.0, last_beat=100.0, state="starting")
    assert slot.overdue(150.0, heartbeat_timeout=3, start_timeout=60) is None
    assert "not ready" in slot.overdue(160.5, heartbeat_timeout=3, start_timeout=60)
    slot.take_lines(b"READY=1\n", 150.0)
    assert slot.overdue(152.9, heartbeat_timeout=3, start_timeout=60) is None


def test_a_worker_is_healthy_only_while_ready_beating_and_its_watchdog_pings_are_current():
    slot = _running_slot()
    assert slot.healthy(101.0, 3, watchdog=None)
    assert slot.healthy(101.0, 3, watchdog=5.0)  # no WATCHDOG=1 yet: two periods from READY=1
    slot.take_lines(b"BEAT\n", 102.0)
    assert not slot.healthy(102.0, 3, watchdog=0.9)  # … and no more
    slot.take_lines(b"WATCHDOG=1\n", 101.0)
    assert slot.healthy(102.0, 3, watchdog=5.0)
    slot.take_lines(b"STATUS=not ready: ingest\n", 102.0)
    assert not slot.healthy(102.5, 3, watchdog=5.0)
    slot.take_lines(b"STATUS=ready\nBEAT\n", 103.0)
    assert slot.healthy(103.5, 3, watchdog=5.0)
    assert not slot.healthy(106.5, 3, watchdog=5.0)  # beats stopped
    slot.take_lines(b"BEAT\n", 110.5)
    assert slot.healthy(110.5, 3, watchdog=5.0)  # the last watchdog ping within two periods
    assert not slot.healthy(110.5, 3, watchdog=4.0)


def test_the_zygote_refuses_to_fork_while_another_thread_runs():
    release = threading.Event()
    other = threading.Thread(target=release.wait, name="stray", daemon=True)
    other.start()
    try:
        with pytest.raises(RuntimeError, match="stray"):
            assert_single_threaded()
    finally:
        release.set()
        other.join(5)


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"MP_SERVER__PROCESSES": "-1"}, "server.processes = -1"),
        ({"MP_SERVER__PROCESSES": "two"}, "server.processes = 'two'"),
        ({"MP_SERVER__ROLE": "sender"}, "server.role = 'sender'"),
        ({"MP_SERVER__NODE_NAME": "a b"}, "server.node_name = 'a b'"),
    ],
)
def test_a_bad_process_setting_is_one_line_naming_field_value_and_fix(env, field, tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "check-config"],
        env={"PATH": "/usr/bin:/bin", "MP_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], done.stderr
    assert "must be" in lines[0]


def test_the_processes_argument_is_validated_like_the_setting(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "serve", "--processes", "x"],
        env={"PATH": "/usr/bin:/bin", "MP_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "server.processes = 'x'" in done.stderr and "0 one per CPU core" in done.stderr


# --- real processes -------------------------------------------------------------------------


def live_children(root_pid: int) -> dict[int, psutil.Process]:
    found = {}
    for child in psutil.Process(root_pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found[child.pid] = child
        except psutil.NoSuchProcess:
            continue
    return found


def workers(srv, count: int = 2) -> dict[int, int]:
    """{slot: pid} of the root's live worker processes: its children registered as workers.

    Forked workers are the root's children (it is their subreaper) but carry the zygote's
    environment, so the node table says which slot each one serves.
    """

    def registered() -> dict[int, int] | None:
        children = live_children(srv.proc.pid)
        found = {
            slot: pid
            for slot, pid in rows(
                db_file(srv), "SELECT process_index, pid FROM node WHERE kind = 'worker'"
            )
            if pid in children
        }
        return found if len(found) == count else None

    return until(registered, 30, f"{count} workers registered")


def zygote_of(srv) -> psutil.Process | None:
    """The root's live zygote, by the pid its last start event names."""
    started = rows(
        db_file(srv),
        "SELECT detail FROM supervisor_event WHERE actor = 'zygote' AND event IN "
        "('start', 'restart') ORDER BY id DESC LIMIT 1",
    )
    if not started:
        return None
    pid = int(started[0][0].split(",")[0].removeprefix("pid "))
    return live_children(srv.proc.pid).get(pid)


def serving_worker(api, slot: int, not_pid: int) -> dict | None:
    """The node row of the process now serving in `slot`, once it is a new one and running."""
    try:
        items = api.get("/api/v1/admin/nodes").json()["items"]
    except requests.ConnectionError:  # a keep-alive connection to the worker just replaced
        return None
    return next(
        (
            n
            for n in items
            if n["kind"] == "worker"
            and n["process_index"] == slot
            and n["pid"] != not_pid
            and n["state"] == "running"
        ),
        None,
    )


def accepted_total(api) -> float:
    text = api.get("/metrics").text
    lines = [
        ln for ln in text.splitlines() if ln.startswith("messagepusher_messages_accepted_total")
    ]
    assert lines and 'node="' in lines[0], text[:500]
    return float(lines[0].rsplit(" ", 1)[1])


class Load:
    """Client threads posting messages until stopped; every id answered 202 is kept."""

    def __init__(self, server, key: str, channel: str, threads: int = 6):
        self.server, self.key, self.channel = server, key, channel
        self.accepted: list[int] = []
        self.other: list[str] = []
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._post, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        for t in self.threads:
            t.join(60)

    def _post(self, n: int) -> None:
        api = self.server.client(self.key)
        i = 0
        while not self.done.is_set():
            i += 1
            try:
                r = api.post(
                    "/api/v1/messages",
                    json={"title": f"load {n}-{i}", "channels": [self.channel]},
                    timeout=30,
                )
            except OSError:  # the worker holding the connection was killed: connection level only
                api = self.server.client(self.key)
                continue
            with self.lock:
                if r.status_code == 202:
                    self.accepted.append(r.json()["id"])
                else:
                    self.other.append(f"{r.status_code} {r.text[:200]}")

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def wait_for_more(self, more: int, what: str) -> None:
        target = self.count() + more
        until(lambda: self.count() >= target, 60, what)


def delivered_ids(requests: list[dict]) -> set[int]:
    """Message ids the sink answered 200 (takes the requests, not the sink: wait_for holds its lock)."""
    return {r["body"]["id"] for r in requests if isinstance(r["body"], dict) and r["status"] == 200}


def test_killed_workers_are_replaced_while_the_other_serves_and_every_202_is_delivered(
    server_factory, sink
):
    srv = server_factory(FAST)
    key = srv.create_key()
    api = srv.client(key)
    webhook(api, sink.url + "/procs", name="procs-hook")
    before = accepted_total(api)
    with Load(srv, key, "procs-hook") as load:
        for kill in range(3):
            load.wait_for_more(20, f"202s before kill {kill}")
            slot, pid = sorted(workers(srv).items())[kill % 2]
            psutil.Process(pid).send_signal(signal.SIGKILL)
            load.wait_for_more(10, "the other worker answering")
            killed_at = time.monotonic()
            until(
                lambda s=slot, p=pid: serving_worker(api, s, p),
                SERVING_AGAIN_SECONDS,
                f"a new worker serving in slot {slot}",
            )
            assert time.monotonic() - killed_at < SERVING_AGAIN_SECONDS
            after = accepted_total(api)
            assert after >= before, "a counter went backwards when a worker was replaced"
            before = after
    assert load.other == [], load.other[:5]
    assert len(load.accepted) >= 60
    sink.wait_for(lambda got: set(load.accepted) <= delivered_ids(got), timeout=90)
    events = api.get("/api/v1/admin/supervisor/events", params={"event": "exit"}).json()["items"]
    assert sum("killed by signal SIGKILL" in e["detail"] for e in events) >= 3, events
    restarts = api.get("/api/v1/admin/supervisor/events", params={"event": "restart"}).json()
    assert len([e for e in restarts["items"] if e["actor"].startswith("worker-")]) >= 3


def test_workers_fork_from_a_threadless_zygote_and_a_replacement_owns_leases_under_a_new_id(
    server_factory,
):
    srv = server_factory(FAST)
    api = srv.client(srv.create_key())
    zygote = zygote_of(srv)
    assert zygote is not None and zygote.num_threads() == 1, "the zygote forks: no thread at all"
    first = workers(srv)
    nodes = {n["pid"]: n["id"] for n in api.get("/api/v1/admin/nodes").json()["items"]}
    # Each worker renewed the id the zygote computed at import: host:pid:start, its own pid.
    for pid in first.values():
        assert nodes[pid].split(":")[1] == str(pid), nodes
    assert len({nodes[pid] for pid in first.values()}) == 2

    psutil.Process(first[1]).send_signal(signal.SIGKILL)
    new = until(lambda: serving_worker(api, 1, first[1]), SERVING_AGAIN_SECONDS, "worker-1 back")
    assert new["id"] != nodes[first[1]] and new["id"].split(":")[1] == str(new["pid"])
    assert zygote.is_running() and zygote_of(srv).pid == zygote.pid  # it outlives forks
    events = api.get("/api/v1/admin/supervisor/events", params={"event": "restart"}).json()
    assert any(
        e["actor"] == "worker-1" and f"pid {new['pid']}" in e["detail"] and "zygote" in e["detail"]
        for e in events["items"]
    ), events

    # A dead zygote is recorded and replaced; workers are forked from the new one.
    zygote.send_signal(signal.SIGKILL)
    until(
        lambda: (z := zygote_of(srv)) is not None and z.pid != zygote.pid,
        SERVING_AGAIN_SECONDS,
        "a new zygote",
    )
    zygote_events = [
        (e["event"], e["detail"])
        for e in api.get("/api/v1/admin/supervisor/events").json()["items"]
        if e["actor"] == "zygote"
    ]
    assert ("exit", f"pid {zygote.pid} killed by signal SIGKILL") in zygote_events, zygote_events
    assert any(event == "restart" for event, _ in zygote_events), zygote_events
    second = workers(srv)[2]
    psutil.Process(second).send_signal(signal.SIGKILL)
    again = until(lambda: serving_worker(api, 2, second), SERVING_AGAIN_SECONDS, "worker-2 back")
    assert again["id"] not in (nodes[second], new["id"])
    assert srv.stop() == 0


def test_workers_of_a_killed_root_exit_the_port_frees_and_a_restart_delivers_everything(
    server_factory, sink
):
    srv = server_factory(FAST)
    key = srv.create_key()
    api = srv.client(key)
    webhook(api, sink.url + "/root", name="root-hook")
    sink.delay = 2.0  # sends are in flight when the root dies
    ids = []
    for i in range(20):
        r = api.post("/api/v1/messages", json={"title": f"root {i}", "channels": ["root-hook"]})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    pids = list(workers(srv).values())
    assert len(pids) == 2
    port = srv.port
    srv.kill9()
    killed_at = time.monotonic()

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    until(lambda: all(gone(p) for p in pids), 10, "every worker of the dead root exited")
    assert time.monotonic() - killed_at < 10

    def port_free() -> bool:
        # SO_REUSEADDR as every server sets it: closed connections in TIME_WAIT do not count,
        # a socket still listening does.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    until(port_free, 10, f"port {port} free")
    sink.delay = 0.0
    srv.start()
    api = srv.client(key)
    # Well inside the 60 s lease: the restart takes back what the dead workers held (they are
    # zombies here until something reaps them, and a zombie holds no lease).
    for message_id in ids:
        assert api.wait_message(message_id, ("delivered",), timeout=30)["status"] == "delivered"
    assert set(ids) <= delivered_ids(sink.received())


@pytest.fixture
def notify_recorder():
    recorder = NotifySocket()
    yield recorder
    recorder.close()


def test_a_worker_that_stops_beating_is_replaced_sighup_reloads_all_and_sigterm_exits_0(
    server_factory, notify_recorder
):
    srv = server_factory(
        {
            **FAST,
            "MP_FAULTS__HEARTBEAT__HANG_ON_NTH": "40",
            "MP_FAULTS__HEARTBEAT__WORKER": "1",
            "NOTIFY_SOCKET": notify_recorder.path,
            "WATCHDOG_USEC": "4000000",
        }
    )
    api = srv.client(srv.create_key())
    first = workers(srv)[1]

    def hung_event() -> list:
        try:
            items = api.get("/api/v1/admin/supervisor/events", params={"event": "hung"}).json()
        except requests.ConnectionError:  # a keep-alive connection to the hung worker, killed
            return []
        return [e for e in items["items"] if e["actor"] == "worker-1"]

    events = until(hung_event, 60, "the root reporting worker-1 hung")
    assert "no heartbeat" in events[0]["detail"]
    until(lambda: serving_worker(api, 1, first), SERVING_AGAIN_SECONDS, "worker-1 replaced")
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"

    def watchdog_resumed() -> bool:
        lines = notify_recorder.lines()
        unwell = [i for i, ln in enumerate(lines) if ln.startswith("STATUS=not ready")]
        return bool(unwell) and "WATCHDOG=1" in lines[unwell[-1] :]

    until(watchdog_resumed, 30, "the root feeding the watchdog again")
    live = list(workers(srv).values())
    srv.proc.send_signal(signal.SIGHUP)
    until(
        lambda: srv.log().count("configuration reloaded") >= 2, 30, "SIGHUP reaching both workers"
    )
    assert srv.stop() == 0
    assert all(not psutil.pid_exists(p) for p in live)
    assert "did not stop in time" not in srv.log()
    assert rows(db_file(srv), "SELECT pid FROM node") == [], "a process did not leave the registry"

    # Only the root told systemd: ready once, the watchdog paused while worker-1 was unwell.
    assert {pid for _at, pid, _text in notify_recorder.received} == {srv.proc.pid}
    lines = notify_recorder.lines()
    assert lines.count("READY=1") == 1 and lines[-1] == "STOPPING=1"
    unwell = next(
        i for i, ln in enumerate(lines) if ln.startswith("STATUS=not ready") and "worker-1" in ln
    )
    well_again = lines.index("STATUS=ready", unwell)
    assert "WATCHDOG=1" in lines[:unwell] and "WATCHDOG=1" in lines[well_again:]
    assert "WATCHDOG=1" not in lines[unwell:well_again]


def test_past_the_process_restart_intensity_the_root_stops_the_rest_and_exits_70(server_factory):
    srv = server_factory({**FAST, "MP_SUPERVISOR__MAX_RESTARTS": "1"})
    api = srv.client(srv.create_key())
    first = workers(srv)
    psutil.Process(first[1]).send_signal(signal.SIGKILL)
    until(lambda: serving_worker(api, 1, first[1]), SERVING_AGAIN_SECONDS, "worker-1 replaced")
    again = workers(srv)
    psutil.Process(again[1]).send_signal(signal.SIGKILL)
    assert srv.proc.wait(60) == 70
    assert not psutil.pid_exists(again[2]) or psutil.Process(again[2]).status() == "zombie"
    assert "restart intensity is exceeded" in srv.log()
    events = rows(db_file(srv), "SELECT actor, event FROM supervisor_event WHERE event = 'give_up'")
    assert events == [("worker-1", "give_up")]


def test_a_node_metrics_view_sums_counters_of_ended_workers_and_labels_the_node(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = (
        "from messagepusher.supervisor.metrics import Metrics\n"
        "m = Metrics(); m.accepted.inc(2); m.sse_streams.set(5); print(__import__('os').getpid())"
    )
    pids = [
        int(
            subprocess.run(
                [sys.executable, "-c", count],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )
        for _ in range(2)
    ]
    render = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from messagepusher.supervisor.metrics import Metrics, forget_process\n"
        "folder = Path(os.environ['PROMETHEUS_MULTIPROC_DIR'])\n"
        "for pid in sys.argv[1:]: forget_process(int(pid), folder)\n"
        "sys.stdout.write(Metrics().render('web-1').decode())"
    )
    done = subprocess.run(
        [sys.executable, "-c", render, *map(str, pids)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert 'messagepusher_messages_accepted_total{node="web-1"} 4.0' in lines
    # The live gauges of ended workers (5 each) are gone; only the rendering process's 0 is left.
    assert 'messagepusher_sse_streams{node="web-1"} 0.0' in lines
