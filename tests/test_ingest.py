"""Ingest: a crash while committing answers 503 and stores nothing; the restarted actor takes over."""

from __future__ import annotations

import sqlite3

from support.ops import webhook


def test_an_ingest_crash_answers_503_stores_nothing_and_the_next_send_is_accepted(
    server_factory, sink
):
    srv = server_factory(
        {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_FAULTS__INGEST__RAISE_ON_NTH": "1"}
    )
    api = srv.client(srv.create_key())
    webhook(api, sink.url + "/h", name="h")
    first = api.post("/api/v1/messages", json={"title": "first", "channels": ["h"]})
    assert first.status_code == 503 and first.headers["Retry-After"]
    assert first.json()["error"]["code"] == "not_ready"
    second = api.post("/api/v1/messages", json={"title": "second", "channels": ["h"]})
    for _ in range(50):
        if second.status_code == 202:
            break
        second = api.post("/api/v1/messages", json={"title": "second", "channels": ["h"]})
    assert second.status_code == 202
    api.wait_message(second.json()["id"], ("delivered",))
    db = sqlite3.connect(srv.data_dir / "messagepusher.db")
    assert [t for (t,) in db.execute("SELECT title FROM message")] == ["second"]
    events = [
        e
        for (e,) in db.execute(
            "SELECT event FROM supervisor_event WHERE actor = 'ingest' ORDER BY id"
        )
    ]
    assert events[:3] == ["start", "crash", "restart"]
