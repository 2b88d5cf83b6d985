"""SIGTERM under load: exit 0, leases given back, and every message that got a 202 is delivered after the restart."""

from __future__ import annotations

import concurrent.futures
import re
import threading

import pytest
import requests
import yaml
from support.ops import db_file, rows, until, webhook
from support.server import REPO

pytestmark = pytest.mark.xdist_group("heavy")
SLOW_SEND_SECONDS = 5.0  # the sink's answer once the test wants sends in flight at the stop
SHUTDOWN_TIMEOUT_SECONDS = 0.5  # the channel pool's wait for them: far shorter, so it must release


def quick_channel_pool_stop(path):
    """A config whose channel pool waits only SHUTDOWN_TIMEOUT_SECONDS for its sends at a stop."""
    children = yaml.safe_load((REPO / "supervisor.yaml").read_text())["supervisor"]["children"]
    for child in children:
        if child["name"] == "channel_pool":
            child["shutdown_timeout_seconds"] = SHUTDOWN_TIMEOUT_SECONDS
    path.write_text(yaml.safe_dump({"supervisor": {"children": children}}))
    return path


def leased(srv) -> int:
    return rows(db_file(srv), "SELECT count(*) FROM mailbox WHERE state = 'leased'")[0][0]


def test_sigterm_under_load_exits_0_releases_the_leases_of_unfinished_sends_and_loses_no_accepted_message(
    server_factory, sink, tmp_path
):
    sink.delay = 0.01
    srv = server_factory(
        {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_SHUTDOWN_GRACE_SECONDS": "2"},
        config=quick_channel_pool_stop(tmp_path / "supervisor.yaml"),
    )
    key = srv.create_key()
    api = srv.client(key)
    webhook(api, sink.url + "/h", name="h")
    stop = threading.Event()

    def client() -> tuple[list[int], list[int]]:
        accepted, refused = [], []
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        for _ in range(400):
            if stop.is_set():
                break
            try:
                r = session.post(
                    srv.url + "/api/v1/messages", json={"title": "t", "channels": ["h"]}, timeout=10
                )
            except requests.ConnectionError:
                break
            (accepted if r.status_code == 202 else refused).append(
                r.status_code == 202 and r.json()["id"] or r.status_code
            )
        return accepted, refused

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client) for _ in range(8)]
        sink.wait_for(lambda rs: len(rs) >= 100, timeout=60)
        sink.delay = SLOW_SEND_SECONDS
        until(lambda: leased(srv) > 0, 30, "sends in flight when SIGTERM comes")
        code = srv.stop(timeout=60)
        stop.set()
        results = [f.result() for f in futures]
    log = srv.log()
    assert code == 0, log[-2000:]
    released = [int(n) for n in re.findall(r"channel_pool: released (\d+) unfinished entries", log)]
    assert released and released[0] > 0, log[-2000:]
    assert leased(srv) == 0, "a clean stop leaves no lease for the next start to wait out"
    accepted = {i for a, _ in results for i in a}
    refused = [c for _, r in results for c in r]
    assert set(refused) <= {503}, refused
    assert "Traceback" not in log
    sink.delay = 0.0
    srv.start()
    sink.wait_for(
        lambda rs: accepted <= {r["body"]["id"] for r in rs if isinstance(r["body"], dict)},
        timeout=60,
    )
