"""The monitor against the real server: a hung pool found by its pings, and an alert's life cycle."""

from __future__ import annotations

import pytest
from support.ops import db_file, rows, until, webhook

pytestmark = pytest.mark.xdist_group("heavy")


def test_a_hung_pool_is_found_by_the_monitor_and_restarted_and_its_backlog_alert_is_sent_once_then_resolved(
    server_factory, sink
):
    server = server_factory(
        {
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_FAULTS__CHANNEL_POOL__HANG_ON_NTH": "1",
            # One worker: the first send (leased to the idle pool, which hangs on it) takes
            # its only room, so the second waits in the queue, where the backlog shows.
            "MP_CHANNEL_POOL__WORKERS": "1",
            "MP_MONITOR__INTERVAL": "0.2",
            "MP_MONITOR__PING_DEADLINE_SECONDS": "2",
            "MP_MONITOR__ALERT_CHANNELS": "admin/alerts",
            "MP_MONITOR__ALERTS__BACKLOG_AGE_SECONDS": "0.5",
        }
    )
    api = server.client(server.create_key())
    webhook(api, sink.url + "/alerts", name="alerts")
    first = api.post(
        "/api/v1/messages", json={"title": "hangs the pool", "channels": ["alerts"]}
    ).json()["id"]
    second = api.post(
        "/api/v1/messages", json={"title": "waits behind it", "channels": ["alerts"]}
    ).json()["id"]

    def titles():
        return [r["body"]["title"] for r in sink.received()]

    until(
        lambda: any(t.startswith("[MessagePusher resolved] backlog") for t in titles()),
        30,
        "a resolved notice",
    )
    api.wait_message(first, ("delivered",))
    api.wait_message(second, ("delivered",))
    fired = [t for t in titles() if t.startswith("[MessagePusher alert] backlog: channel_pool")]
    resolved = [t for t in titles() if t == "[MessagePusher resolved] backlog: channel_pool"]
    assert len(fired) == 1 and len(resolved) == 1, titles()

    hung = rows(
        db_file(server),
        "SELECT detail FROM supervisor_event WHERE actor = 'channel_pool' AND event = 'hung'",
    )
    assert hung == [("no answer to the monitor's ping within 2s",)]
    alerts = api.get("/api/v1/admin/alerts", params={"rule": "backlog"}).json()["items"]
    assert len(alerts) == 1 and alerts[0]["state"] == "resolved" and alerts[0]["count"] > 1
    acked = api.post(f"/api/v1/admin/alerts/{alerts[0]['id']}/ack")
    assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "admin"
    assert api.get("/api/v1/admin/alerts", params={"state": "bogus"}).status_code == 422
