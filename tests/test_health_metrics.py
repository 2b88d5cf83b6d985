"""Health and metrics against the real server: /readyz through a hang, /metrics, status and logs."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import requests
from fakes.pages import PageServer
from fakes.sink import Sink
from prometheus_client.parser import text_string_to_metric_families
from support.ops import db_file, rows, run_job, until, webhook

FINAL = ("delivered", "failed", "partially_failed", "cancelled")

# Never due during the test, and within limits.max_schedule_days (366) of now.
LATER = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300 * 86400))

TOKEN = "metrics-token-Test-1"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_need_the_token_parse_and_the_queue_gauge_matches_the_mailbox(server_factory, sink):
    server = server_factory(
        {
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_METRICS__TOKEN": TOKEN,
            "MP_MONITOR__INTERVAL": "0.2",
        }
    )
    api = server.client(server.create_key())
    webhook(api, sink.url + "/in")
    for _ in range(3):
        assert (
            api.post(
                "/api/v1/messages",
                json={"title": "later", "channels": ["hook"], "send_at": LATER},
            ).status_code
            == 202
        )
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 401
    assert (
        requests.get(
            server.url + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=10
        ).status_code
        == 401
    )
    scraped = requests.get(
        server.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert scraped.status_code == 200 and scraped.headers["Content-Type"].startswith("text/plain")

    values = samples(scraped.text)
    in_db = dict(
        ((r, s), n)
        for r, s, n in rows(
            db_file(server),
            "SELECT recipient, state, count(*) FROM mailbox WHERE state != 'done' GROUP BY 1, 2",
        )
    )
    assert in_db[("channel_pool", "ready")] == 3
    for (recipient, state), count in in_db.items():
        assert (
            values[("messagepusher_mailbox_entries", (("recipient", recipient), ("state", state)))]
            == count
        )
    assert (
        values[("messagepusher_mailbox_entries", (("recipient", "fetcher"), ("state", "ready")))]
        == 0
    )
    assert values[("messagepusher_messages_accepted_total", ())] == 3

    def monitored():
        seen = samples(
            requests.get(
                server.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
            ).text
        )
        return seen if seen.get(("messagepusher_process_resident_bytes", ()), 0) > 0 else None

    seen = until(monitored, 30, "process gauges from the monitor")
    assert seen[("messagepusher_actor_up", (("actor", "channel_pool"),))] == 1
    assert seen[("messagepusher_data_disk_free_bytes", ())] > 0


def test_admin_status_shows_every_component_and_the_logs_can_be_read_back(server_factory):
    server = server_factory()
    api = server.client(server.create_key())
    status = api.get("/api/v1/admin/status").json()
    assert status["ready"] and set(status["components"]) >= {
        "ingest",
        "channel_pool",
        "janitor",
        "monitor",
    }
    assert status["components"]["channel_pool"]["pool"]["max_workers"] == 16
    assert status["components"]["ingest"]["started_at"].endswith("Z")  # RFC 3339 like every time
    assert status["resources"]["rss_bytes"] > 0 and status["resources"]["disk_free_bytes"] > 0

    since = time.time() - 3600
    found = api.get(
        "/api/v1/admin/logs",
        params={
            "q": "listening on",
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)),
        },
    ).json()["items"]
    assert len(found) == 1 and found[0]["level"] == "INFO"
    assert (
        api.get("/api/v1/admin/logs", params={"level": "ERROR", "q": "listening on"}).json()[
            "items"
        ]
        == []
    )
    assert api.get("/api/v1/admin/logs", params={"level": "LOUD"}).status_code == 422
    assert api.get("/healthz").json() == {"status": "ok"}


@pytest.mark.xdist_group("heavy")
def test_readyz_is_503_naming_a_hung_actor_and_200_again_after_its_restart(server_factory, sink):
    server = server_factory(
        {
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_FAULTS__CHANNEL_POOL__HANG_ON_NTH": "1",
            "MP_MONITOR__INTERVAL": "0.1",
            "MP_MONITOR__PING_DEADLINE_SECONDS": "2",
        }
    )
    api = server.client(server.create_key())
    webhook(api, sink.url + "/in")
    assert api.get("/readyz").status_code == 200
    api.post("/api/v1/messages", json={"title": "hangs the pool", "channels": ["hook"]})

    down = until(
        lambda: (r := api.get("/readyz")).status_code == 503 and r.json(), 30, "readyz 503"
    )
    assert "channel_pool" in down["error"]["details"] and api.get("/healthz").status_code == 200
    until(lambda: api.get("/readyz").status_code == 200, 30, "readyz 200 after the restart")
    assert api.get("/api/v1/admin/status").json()["components"]["channel_pool"]["restarts"] == 1


def test_the_documented_metrics_count_deliveries_steps_end_to_end_job_runs_and_queued_requests(
    server_factory, sink
):
    """docs/operations.md's metric table, each fed by what it names through the running server."""
    pages = PageServer()
    refusing = Sink()
    refusing.default_status = 400
    try:
        server = server_factory(
            {
                "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
                "MP_RETRY__BASE_DELAY_SECONDS": "0.2",
                "MP_RETRY__JITTER": "0",
                "MP_SERVER__THREADS": "1",  # so concurrent requests queue for the one worker
            }
        )
        api = server.client(server.create_key())
        webhook(api, sink.url + "/ok", name="ok")
        webhook(api, refusing.url + "/bad", name="bad")
        sink.script = [500]  # the first send is retried, then sent
        fetched = api.post(
            "/api/v1/messages",
            json={
                "title": "metrics",
                "url": pages.url + "/article",
                "ai": {"task": "summarize"},
                "channels": ["ok"],
            },
        )
        refused = api.post("/api/v1/messages", json={"title": "refused", "channels": ["bad"]})
        assert fetched.status_code == 202 and refused.status_code == 202
        assert api.wait_message(fetched.json()["id"], FINAL)["status"] == "delivered"
        assert api.wait_message(refused.json()["id"], FINAL)["status"] == "failed"
        assert run_job(api, "retention_purge")["outcome"] == "ok"

        def flood() -> None:
            with concurrent.futures.ThreadPoolExecutor(24) as pool:
                list(pool.map(lambda _: api.get("/api/v1/admin/status"), range(48)))

        flood()
        values = samples(requests.get(server.url + "/metrics", timeout=10).text)
    finally:
        pages.close()
        refusing.close()

    def delivered(outcome: str) -> float:
        key = (("channel_type", "webhook"), ("outcome", outcome))
        return values.get(("messagepusher_deliveries_total", key), 0)

    assert (delivered("sent"), delivered("pending"), delivered("failed")) == (1, 1, 1), values
    for step in ("fetch", "ai", "send"):
        count = values.get(("messagepusher_step_seconds_count", (("step", step),)), 0)
        assert count >= 1, (step, count)
    assert values[("messagepusher_step_seconds_count", (("step", "send"),))] == 3
    assert values[("messagepusher_end_to_end_seconds_count", ())] == 1
    assert values[("messagepusher_end_to_end_seconds_sum", ())] > 0
    job = (("job", "retention_purge"), ("outcome", "ok"))
    assert values[("messagepusher_job_runs_total", job)] == 1
    assert values[("messagepusher_http_task_queue_depth", ())] >= 1
    # Each accept, send outcome and job run above wrote under SQLite's one write lock.
    assert values[("messagepusher_db_write_lock_holds_total", ())] >= 5
    assert values[("messagepusher_db_write_lock_held_seconds_total", ())] > 0
    assert ("messagepusher_db_write_lock_wait_seconds_total", ()) in values
    assert "HTTP requests are queueing" in server.log()
