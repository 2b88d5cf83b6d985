"""The whole service on PostgreSQL: the same pipeline, leases and restarts as on SQLite."""

from __future__ import annotations

import psycopg2
import pytest
from support.ops import until, webhook

pytestmark = pytest.mark.xdist_group("heavy")


def leased_sends(url: str) -> list[int]:
    """Ids of channel_pool entries leased right now, read from the test's schema."""
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id FROM mailbox WHERE recipient = 'channel_pool' AND state = 'leased'"
            )
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def test_the_server_delivers_on_postgresql_and_a_kill_9_mid_send_is_recovered_from_its_leases(
    server_factory, postgres_url, sink
):
    url, _schema = postgres_url
    srv = server_factory({"MP_DATABASE__URL": url, "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true"})
    api = srv.client(srv.create_key())
    webhook(api, sink.url + "/pg", name="pg-hook")
    first = api.post("/api/v1/messages", json={"title": "pg first", "channels": ["pg-hook"]})
    assert first.status_code == 202, first.text
    message = api.wait_message(first.json()["id"], ("delivered",))
    assert message["deliveries"][0]["status"] == "sent"

    sink.delay = 30.0  # every later send hangs: its lease is held when the process dies
    ids = []
    for i in range(20):
        r = api.post("/api/v1/messages", json={"title": f"pg {i}", "channels": ["pg-hook"]})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    in_flight = until(lambda: leased_sends(url), 30, "sends leased on PostgreSQL")
    srv.kill9()
    assert set(leased_sends(url)) >= set(in_flight), "the dead process's leases are still held"

    sink.delay = 0.0
    srv.start()
    api = srv.client(srv.create_key())
    for message_id in ids:
        assert api.wait_message(message_id, ("delivered",), timeout=60)["status"] == "delivered"
    got = {x["body"]["id"] for x in sink.received() if isinstance(x["body"], dict)}
    assert set(ids) <= got
    assert leased_sends(url) == []
