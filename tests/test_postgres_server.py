"""The whole service on PostgreSQL: the same pipeline, leases and restarts as on SQLite."""

from __future__ import annotations


def test_the_server_delivers_on_postgresql_and_recovers_after_kill_9(
    server_factory, postgres_url, sink
):
    url, _schema = postgres_url
    srv = server_factory({"MP_DATABASE__URL": url, "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true"})
    api = srv.client(srv.create_key())
    r = api.post(
        "/api/v1/channels",
        json={"name": "pg-hook", "type": "webhook", "config": {"url": sink.url + "/pg"}},
    )
    assert r.status_code == 201, r.text
    ids = []
    for i in range(20):
        r = api.post("/api/v1/messages", json={"title": f"pg {i}", "channels": ["pg-hook"]})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    message = api.wait_message(ids[-1], ("delivered",))
    assert message["deliveries"][0]["status"] == "sent"
    srv.kill9()
    srv.start()
    api = srv.client(srv.create_key())
    r = api.post("/api/v1/messages", json={"title": "after restart", "channels": ["pg-hook"]})
    assert r.status_code == 202
    api.wait_message(r.json()["id"], ("delivered",))
    got = {x["body"]["id"] for x in sink.received()}
    assert set(ids) <= got
