"""A message's life when its process dies: a scheduled send and the final callback survive kill -9.

The callback is POSTed once per message: retried on 5xx, also by the next process; never after a
refusal (4xx); and not again after a restart.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from fakes.sink import Sink
from support.ops import db_file, rows, until, webhook

FINAL = ("delivered", "failed", "partially_failed", "cancelled")
SCHEDULED_AHEAD_SECONDS = 20
RETRY_DELAY_SECONDS = 3.0  # the callback's back-off: long enough to kill the process before it


@pytest.fixture
def callbacks():
    s = Sink()
    yield s
    s.close()


def callback_state(server) -> list[tuple]:
    return rows(db_file(server), "SELECT state, attempts FROM mailbox WHERE kind = 'callback'")


def test_a_message_scheduled_ahead_survives_kill_9_and_is_sent_after_its_time_not_before(
    server_factory, sink
):
    server = server_factory({"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true"})
    api = server.client(server.create_key())
    webhook(api, sink.url + "/later", name="later")
    # Far enough ahead that the restart is over well before it: a message sent at once after
    # the restart (its time forgotten) would arrive early and fail the last assert.
    send_at = datetime.now(UTC) + timedelta(seconds=SCHEDULED_AHEAD_SECONDS)
    r = api.post(
        "/api/v1/messages",
        json={"title": "scheduled", "channels": ["later"], "send_at": send_at.isoformat()},
    )
    assert r.status_code == 202 and r.json()["status"] == "scheduled", r.text
    server.kill9()
    assert sink.received(None) == []
    server.start()
    api = server.client(server.create_key())
    assert api.get(f"/api/v1/messages/{r.json()['id']}").json()["status"] == "scheduled"
    message = api.wait_message(r.json()["id"], FINAL, timeout=60)
    assert message["status"] == "delivered", message
    (arrival,) = sink.received()
    assert arrival["at"] >= send_at.timestamp(), arrival["at"] - send_at.timestamp()


def test_a_callback_answered_503_is_retried_by_the_next_process_after_kill_9_and_posted_once(
    server_factory, sink, callbacks
):
    env = {
        "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
        "MP_RETRY__BASE_DELAY_SECONDS": str(RETRY_DELAY_SECONDS),
        "MP_RETRY__JITTER": "0",
    }
    server = server_factory(env)
    api = server.client(server.create_key())
    webhook(api, sink.url + "/cb", name="cb")
    callbacks.script = [503]
    r = api.post(
        "/api/v1/messages",
        json={
            "title": "with callback",
            "channels": ["cb"],
            "callback_url": callbacks.url + "/done",
        },
    )
    assert r.status_code == 202, r.text
    message_id = r.json()["id"]
    callbacks.wait_for(lambda rs: len(rs) >= 1, timeout=30)
    server.kill9()
    restarted = time.time()
    server.start()
    got = callbacks.wait_for(lambda rs: any(x["status"] == 200 for x in rs), timeout=60)
    assert [x["status"] for x in got] == [503, 200]
    assert got[1]["at"] >= restarted, "the retry came from the process started after kill -9"
    assert got[1]["body"]["id"] == message_id and got[1]["body"]["status"] == "delivered"
    until(lambda: callback_state(server) == [("done", 2)], 30, "callback entry done")

    assert server.stop() == 0
    server.start()
    api = server.client(server.create_key())
    after = api.post("/api/v1/messages", json={"title": "after restart", "channels": ["cb"]})
    assert api.wait_message(after.json()["id"], FINAL)["status"] == "delivered"
    assert len(callbacks.received(None)) == 2, "a restart must not post the callback again"


def test_a_callback_refused_with_a_4xx_is_posted_once_and_never_retried(
    server_factory, sink, callbacks
):
    server = server_factory(
        {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_RETRY__BASE_DELAY_SECONDS": "0.2"}
    )
    api = server.client(server.create_key())
    webhook(api, sink.url + "/cb", name="cb")
    callbacks.default_status = 410
    r = api.post(
        "/api/v1/messages",
        json={"title": "refused", "channels": ["cb"], "callback_url": callbacks.url + "/gone"},
    )
    assert r.status_code == 202, r.text
    until(lambda: callback_state(server) == [("dead", 1)], 30, "callback entry dead after one try")
    assert [x["status"] for x in callbacks.received(None)] == [410]
