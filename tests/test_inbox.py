"""The client and none channels, the inbox API and its SSE stream against the real server."""

from __future__ import annotations

import json
import subprocess
import time

import requests
from support.ops import until
from support.server import Client, ServerProcess

from messagepusher.operations.listen import parse_events

FAST_STREAMS = {
    "MP_STREAMS__KEEPALIVE_SECONDS": "0.3",
    "MP_STREAMS__POLL_SECONDS": "0.1",
    "MP_STREAMS__MAX_SECONDS": "20",  # a stream that never gets its events ends the test
}


class Stream:
    """An open SSE response read event by event, each read bounded by the socket timeout."""

    def __init__(self, server: ServerProcess, key: str, path: str, last_event_id=None):
        headers = {"Authorization": f"Bearer {key}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.resp = requests.get(server.url + path, headers=headers, stream=True, timeout=(5, 15))
        self.events = parse_events(self.resp.iter_lines(decode_unicode=True))

    def take(self, count: int, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < count:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} events: {got}"
            got.append(next(self.events))
        return got

    def close(self) -> None:
        self.resp.close()


def user_with_channel(server: ServerProcess, name: str, type_name: str = "client") -> tuple:
    server.create_user(name)
    key = server.create_key(name)
    api = server.client(key)
    made = api.post(
        "/api/v1/channels",
        json={"name": "phone", "type": type_name, "config": {}, "default": True},
    )
    assert made.status_code == 201, made.text
    return key, api


def send(api: Client, title: str) -> int:
    sent = api.post("/api/v1/messages", json={"title": title, "body": f"body of {title}"})
    assert sent.status_code == 202, sent.text
    return sent.json()["id"]


def inbox_items(api: Client) -> list[dict]:
    items, cursor = [], None
    while True:
        page = api.get("/api/v1/inbox", params={"limit": 200, "cursor": cursor}).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def test_a_subscriber_that_missed_50_messages_and_a_restart_gets_all_50_in_order_once(
    server_factory,
):
    server = server_factory(FAST_STREAMS)
    alice_key, alice = user_with_channel(server, "alice")
    bob_key, bob = user_with_channel(server, "bob")
    stream = Stream(server, alice_key, "/api/v1/inbox/stream")
    bob_stream = Stream(server, bob_key, "/api/v1/inbox/stream")
    send(alice, "before")
    (first,) = stream.take(1)
    assert json.loads(first.data)["title"] == "before"
    stream.close()

    # One after another: the inbox stores in the order deliveries finish, which is the order
    # sent only when each is delivered before the next is posted (the pool sends in parallel).
    sent = []
    for i in range(50):
        sent.append(send(alice, f"m{i}"))
        assert alice.wait_message(sent[-1], ("delivered", "failed"))["status"] == "delivered"
    assert server.stop() == 0
    server.start()

    stream = Stream(server, alice_key, "/api/v1/inbox/stream", first.id)
    got = stream.take(50)
    stream.close()
    ids = [int(e.id) for e in got]
    items = [json.loads(e.data) for e in got]
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert sorted(item["message_id"] for item in items) == sent
    stored_order = [i["id"] for i in reversed(inbox_items(alice)) if i["title"] != "before"]
    assert ids == stored_order  # the stream's order is the inbox's, without gaps
    assert [i["message_id"] for i in items] == sent  # sent one after another, stored in that order

    # Bob's stream, open throughout and resumed after the restart, sees only Bob's message.
    bob_stream.close()
    bob_stream = Stream(server, bob_key, "/api/v1/inbox/stream", 0)
    send(bob, "for bob")
    (only,) = bob_stream.take(1)
    bob_stream.close()
    assert json.loads(only.data)["title"] == "for bob"
    assert [i["title"] for i in inbox_items(bob)] == ["for bob"]


def test_the_inbox_lists_marks_read_and_hides_other_users_items(server_factory):
    server = server_factory()
    _, alice = user_with_channel(server, "alice")
    _, bob = user_with_channel(server, "bob", "none")
    alice.wait_message(send(alice, "a1"), ("delivered",))
    message = bob.wait_message(send(bob, "b1"), ("delivered",))
    assert [d["status"] for d in message["deliveries"]] == ["sent"]
    (item,) = inbox_items(alice)
    assert item["title"] == "a1" and item["read_at"] is None
    assert item["channel"]["type"] == "client"
    assert bob.post(f"/api/v1/inbox/{item['id']}/read").status_code == 404
    read = alice.post(f"/api/v1/inbox/{item['id']}/read")
    assert read.status_code == 200 and read.json()["read_at"]
    assert alice.get("/api/v1/inbox", params={"state": "unread"}).json()["items"] == []
    assert len(alice.get("/api/v1/inbox", params={"state": "read"}).json()["items"]) == 1
    bad = alice.get("/api/v1/inbox", params={"state": "new"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "state"
    (none_item,) = inbox_items(bob)
    assert none_item["title"] == "b1" and none_item["channel"]["type"] == "none"


def test_a_none_channel_message_is_listed_but_never_streamed(server_factory):
    server = server_factory(FAST_STREAMS)
    key, api = user_with_channel(server, "carol", "none")
    client = api.post("/api/v1/channels", json={"name": "desk", "type": "client", "config": {}})
    assert client.status_code == 201
    stream = Stream(server, key, "/api/v1/inbox/stream")
    api.wait_message(send(api, "quiet"), ("delivered",))
    sent = api.post("/api/v1/messages", json={"title": "loud", "channels": ["desk"]})
    (event,) = stream.take(1)
    stream.close()
    assert json.loads(event.data)["title"] == "loud"
    assert sent.json()["id"] == json.loads(event.data)["message_id"]


def test_streams_over_the_per_user_or_total_limit_get_429_with_retry_after(server_factory):
    server = server_factory(
        {**FAST_STREAMS, "MP_STREAMS__MAX_PER_USER": "1", "MP_STREAMS__MAX_TOTAL": "2"}
    )
    keys = [user_with_channel(server, name)[0] for name in ("u1", "u2", "u3")]
    first = Stream(server, keys[0], "/api/v1/inbox/stream")
    again = requests.get(
        server.url + "/api/v1/events/stream",
        headers={"Authorization": f"Bearer {keys[0]}"},
        timeout=10,
    )
    assert again.status_code == 429 and again.headers["Retry-After"] == "1"
    error = again.json()["error"]
    assert error["code"] == "too_many_streams"
    assert error["details"]["setting"] == "streams.max_per_user"
    second = Stream(server, keys[1], "/api/v1/inbox/stream")
    third = requests.get(
        server.url + "/api/v1/inbox/stream",
        headers={"Authorization": f"Bearer {keys[2]}"},
        timeout=10,
    )
    assert third.status_code == 429
    assert third.json()["error"]["details"]["setting"] == "streams.max_total"
    # The server still answers other requests while both streams are open.
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    first.close()  # the slot is free once the next keep-alive finds the client gone

    def reopened():
        resp = requests.get(
            server.url + "/api/v1/inbox/stream",
            headers={"Authorization": f"Bearer {keys[2]}"},
            stream=True,
            timeout=10,
        )
        ok = resp.status_code == 200
        resp.close()
        return ok

    until(reopened, timeout=10, what="a stream slot freed by a closed client", step=0.2)
    second.close()


def test_a_stream_sends_keep_alives_and_ends_after_max_seconds(server_factory):
    server = server_factory({**FAST_STREAMS, "MP_STREAMS__MAX_SECONDS": "1.5"})
    key, _ = user_with_channel(server, "dave")
    started = time.monotonic()
    resp = requests.get(
        server.url + "/api/v1/inbox/stream",
        headers={"Authorization": f"Bearer {key}"},
        stream=True,
        timeout=(5, 15),
    )
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    lines = list(resp.iter_lines(decode_unicode=True))  # ends when the server ends the stream
    assert time.monotonic() - started < 1.5 * 3 + 5
    assert lines[0].startswith("retry: ")
    assert lines.count(": keep-alive") >= 2


def test_a_last_event_id_this_api_never_sent_is_a_422_naming_it(server_factory):
    server = server_factory()
    key, _ = user_with_channel(server, "erin")
    for path in ("/api/v1/inbox/stream", "/api/v1/events/stream"):
        for bad in ("yesterday", "²", "-1", "1.2.3.4", "9" * 40):
            resp = requests.get(
                server.url + path,
                headers={"Authorization": f"Bearer {key}", "Last-Event-ID": bad},
                timeout=10,
            )
            assert resp.status_code == 422, (bad, resp.text)
            assert resp.json()["error"]["details"][0]["field"] == "Last-Event-ID"
        query = requests.get(
            server.url + path,
            params={"last_event_id": "x"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert query.json()["error"]["details"][0]["field"] == "last_event_id"
    no_key = requests.get(server.url + "/api/v1/inbox/stream", timeout=10)
    assert no_key.status_code == 401


def test_the_events_stream_shows_own_status_changes_and_admins_see_everyones(server_factory):
    server = server_factory(FAST_STREAMS)
    alice_key, alice = user_with_channel(server, "alice")
    bob_key, bob = user_with_channel(server, "bob")
    admin_key = server.create_key()
    alice_events = Stream(server, alice_key, "/api/v1/events/stream")
    bob_events = Stream(server, bob_key, "/api/v1/events/stream")
    admin_events = Stream(server, admin_key, "/api/v1/events/stream")
    alice_id = send(alice, "a")
    alice.wait_message(alice_id, ("delivered",))
    bob_id = send(bob, "b")
    bob.wait_message(bob_id, ("delivered",))

    def until_delivered(stream: Stream, message_id: int) -> list[dict]:
        seen = []
        while not any(e["message_id"] == message_id and e["type"] == "delivered" for e in seen):
            (event,) = stream.take(1)
            assert event.name == "message"
            seen.append(json.loads(event.data))
        return seen

    alice_seen = until_delivered(alice_events, alice_id)
    bob_seen = until_delivered(bob_events, bob_id)
    admin_seen = until_delivered(admin_events, bob_id)
    for stream in (alice_events, bob_events, admin_events):
        stream.close()
    assert {e["message_id"] for e in alice_seen} == {alice_id}
    assert {e["message_id"] for e in bob_seen} == {bob_id}
    assert {e["message_id"] for e in admin_seen} == {alice_id, bob_id}
    assert alice_seen[-1]["message_status"] == "delivered"


def test_listen_prints_messages_as_they_arrive_and_resumes_from_its_state_file(
    server_factory, tmp_path
):
    server = server_factory(FAST_STREAMS)
    key, api = user_with_channel(server, "frank")
    state = tmp_path / "listen.state"
    listen = ["listen", "--key", key, "--url", server.url, "--state", str(state), "--count", "2"]
    first = subprocess.Popen(server.command(*listen), stdout=subprocess.PIPE, text=True)
    try:
        # A stream is open once the server counts it; then the two messages are sent.
        until(lambda: _streams(server) > 0, what="listen connected")
        send(api, "one")
        send(api, "two")
        out, _ = first.communicate(timeout=30)
    finally:
        first.kill()
    assert first.returncode == 0
    assert "one\nbody of one" in out and "two\nbody of two" in out
    send(api, "three")  # sent while nobody listens
    again = server.cli(*listen[:-1], "1")
    assert again.returncode == 0, again.stderr
    assert "three" in again.stdout and "two" not in again.stdout
    refused = server.cli("listen", "--key", "mp_x_wrong", "--url", server.url)
    assert refused.returncode == 1 and refused.stderr.startswith("error: HTTP 401")


def _streams(server: ServerProcess) -> int:
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    for line in metrics.splitlines():
        if line.startswith("messagepusher_sse_streams "):
            return int(float(line.split()[1]))
    return 0


def test_on_postgresql_a_subscriber_resumes_after_kill_9_without_gaps(server_factory, postgres_url):
    url, _schema = postgres_url
    server = server_factory({**FAST_STREAMS, "MP_DATABASE__URL": url})
    key, api = user_with_channel(server, "pg")
    events = Stream(server, key, "/api/v1/events/stream")
    stream = Stream(server, key, "/api/v1/inbox/stream")
    send(api, "first")
    (first,) = stream.take(1)
    (event,) = events.take(1)
    assert json.loads(event.data)["type"] == "accepted"
    stream.close()
    events.close()
    sent = [send(api, f"pg{i}") for i in range(20)]
    for message_id in sent:
        api.wait_message(message_id, ("delivered",))
    server.kill9()
    server.start()
    stream = Stream(server, key, "/api/v1/inbox/stream", first.id)
    got = stream.take(20)
    stream.close()
    assert sorted(json.loads(e.data)["message_id"] for e in got) == sent
    assert [int(e.id) for e in got] == sorted(int(e.id) for e in got)


def test_admins_also_get_component_events_and_users_never_do(server_factory):
    server = server_factory(FAST_STREAMS)
    user_key, api = user_with_channel(server, "gina")
    admin = Stream(server, server.create_key(), "/api/v1/events/stream", "0.0.0")
    (event,) = admin.take(1)  # the actors' start events of this server, from the beginning
    admin.close()
    assert event.name == "component" and json.loads(event.data)["event"] == "start"
    mine = Stream(server, user_key, "/api/v1/events/stream", "0.0.0")
    message_id = send(api, "own")
    seen = [mine.take(1)[0] for _ in range(2)]
    mine.close()
    assert [e.name for e in seen] == ["message", "message"]
    assert {json.loads(e.data)["message_id"] for e in seen} == {message_id}
