"""SIGTERM under load: exit 0, and every message that got a 202 is delivered after the restart."""

from __future__ import annotations

import concurrent.futures
import threading

import requests
from support.ops import webhook


def test_sigterm_under_load_exits_0_and_loses_no_accepted_message(server_factory, sink):
    sink.delay = 0.01
    srv = server_factory(
        {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_SHUTDOWN_GRACE_SECONDS": "2"}
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
        sink.wait_for(lambda rs: len(rs) >= 100, timeout=30)
        code = srv.stop()
        stop.set()
        results = [f.result() for f in futures]
    assert code == 0, srv.log()[-2000:]
    accepted = {i for a, _ in results for i in a}
    refused = [c for _, r in results for c in r]
    assert set(refused) <= {503}, refused
    assert "released" in srv.log() or "stopped (exit 0)" in srv.log()
    assert "Traceback" not in srv.log()
    srv.start()
    sink.wait_for(
        lambda rs: accepted <= {r["body"]["id"] for r in rs if isinstance(r["body"], dict)},
        timeout=30,
    )
