"""The message pipeline end to end through the real server: fetch, AI, channels, retries, schedule.

Every peer is a real local server: a webhook sink, a page server, an OpenAI-compatible fake, aiosmtpd.
"""

from __future__ import annotations

import email
import email.policy
import html
import time
from datetime import UTC, datetime, timedelta

import pytest
from fakes.channel_services import FakeSmtp
from fakes.openai_fake import FakeOpenAI
from fakes.pages import PageServer
from fakes.sink import Sink
from support.server import ServerProcess

FINAL = ("delivered", "failed", "partially_failed", "cancelled")


@pytest.fixture(scope="module")
def openai_fake():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory, openai_fake):
    env = {
        "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
        "MP_RETRY__MAX_ATTEMPTS": "3",
        "MP_RETRY__BASE_DELAY_SECONDS": "0.2",
        "MP_RETRY__JITTER": "0",
        "MP_AI__PROVIDERS__FAKE__KIND": "openai",
        "MP_AI__PROVIDERS__FAKE__BASE_URL": openai_fake.base_url,
        "MP_AI__PROVIDERS__FAKE__MODEL": "fake-chat-1",
        "MP_AI__PROVIDERS__FAKE__API_KEY": "sk-test-fake",
    }
    srv = ServerProcess(tmp_path_factory.mktemp("pipeline"), env).start()
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def api(server):
    return server.client(server.create_key())


@pytest.fixture(scope="module")
def pages():
    p = PageServer()
    yield p
    p.close()


_names = iter(range(10_000))


def webhook(api, sink: Sink, **config) -> str:
    name = f"hook{next(_names)}"
    r = api.post(
        "/api/v1/channels",
        json={"name": name, "type": "webhook", "config": {"url": sink.url + "/in", **config}},
    )
    assert r.status_code == 201, r.text
    return name


def send(api, **body) -> int:
    r = api.post("/api/v1/messages", json=body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_a_fetched_and_summarised_message_reaches_a_webhook_and_an_email_with_a_full_timeline(
    api, sink, pages, tmp_path
):
    with FakeSmtp() as smtp:
        r = api.post(
            "/api/v1/channels",
            json={
                "name": "mail",
                "type": "email",
                "config": {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "security": "none",
                    "from": "mp@example.com",
                    "to": ["ops@example.com"],
                },
            },
        )
        assert r.status_code == 201, r.text
        hook = webhook(api, sink)
        message_id = send(
            api,
            title="Report",
            body="see link",
            url=pages.url + "/article",
            ai={"task": "summarize"},
            channels=[hook, "mail"],
        )
        message = api.wait_message(message_id, FINAL)
        assert message["status"] == "delivered", message
        assert [d["status"] for d in message["deliveries"]] == ["sent", "sent"]
        assert (
            message["fetched"]["status"] == "ok"
            and message["fetched"]["title"] == "Quarterly Storage Report"
        )
        assert message["ai"]["status"] == "ok" and message["ai"]["provider"] == "local"
        summary = message["ai"]["result"]
        assert "storage" in summary.lower()
        events = [e["type"] for e in message["events"]]
        for expected in (
            "accepted",
            "fetching",
            "fetched",
            "ai_processing",
            "ai_done",
            "queued",
            "delivery_sent",
            "delivered",
        ):
            assert expected in events, events
        body = sink.received()[0]["body"]
        assert body["id"] == message_id and body["fetched"]["title"] == "Quarterly Storage Report"
        assert body["ai"]["task"] == "summarize" and body["ai"]["result"] == summary
        mail = email.message_from_bytes(smtp.envelopes[0].content, policy=email.policy.default)
        assert mail["Subject"] == "Report"
        text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
        page = mail.get_body(("html",)).get_content()
        link = pages.url + "/article"
        assert f"Quarterly Storage Report\n{link}" in text, text
        assert f'<a href="{link}">Quarterly Storage Report</a>' in page, page
        assert summary in text and summary in html.unescape(page)


def test_the_openai_provider_gets_the_model_and_text_and_its_answer_lands_in_ai_result(
    api, sink, openai_fake
):
    openai_fake.reply("短摘要: the build is green.")
    hook = webhook(api, sink)
    message_id = send(
        api,
        title="CI",
        body="The nightly build finished green after 212 tests.",
        ai={"task": "summarize", "provider": "fake"},
        channels=[hook],
    )
    message = api.wait_message(message_id, FINAL)
    assert (
        message["ai"]["result"] == "短摘要: the build is green."
        and message["ai"]["provider"] == "fake"
    )
    request = openai_fake.requests[-1]
    assert request.body["model"] == "fake-chat-1"
    assert "The nightly build finished green" in str(request.body["messages"])
    assert request.headers.get("Authorization") == "Bearer sk-test-fake"


def test_a_sink_failing_twice_gets_the_message_on_the_third_attempt_under_one_delivery_id(
    api, sink
):
    sink.script = [500, 500]
    message_id = send(api, title="flaky", channels=[webhook(api, sink)])
    message = api.wait_message(message_id, FINAL)
    assert message["status"] == "delivered"
    assert message["deliveries"][0]["attempts"] == 3
    assert [r["status"] for r in sink.received(None)] == [500, 500, 200]
    delivery_id = str(message["deliveries"][0]["id"])
    assert [r["headers"]["X-MessagePusher-Delivery"] for r in sink.received(None)] == [
        delivery_id
    ] * 3
    assert [e["type"] for e in message["events"]].count("delivery_retry") == 2


def test_a_sink_that_always_fails_leaves_a_dead_delivery_and_retry_sends_it_again(api, sink):
    sink.default_status = 500
    message_id = send(api, title="doomed", channels=[webhook(api, sink)])
    message = api.wait_message(message_id, FINAL)
    assert message["status"] == "failed"
    delivery = message["deliveries"][0]
    assert delivery["status"] == "dead" and delivery["attempts"] == 3
    assert delivery["response_code"] == 500 and "500" in delivery["last_error"]
    assert len(sink.received(None)) == 3
    sink.default_status = 200
    r = api.post(f"/api/v1/messages/{message_id}/retry")
    assert r.status_code == 202, r.text
    message = api.wait_message(message_id, ("delivered",))
    assert message["deliveries"][0]["status"] == "sent"
    assert api.post(f"/api/v1/messages/{message_id}/retry").status_code == 409


def test_a_message_scheduled_3_seconds_ahead_arrives_after_and_not_before(api, sink):
    send_at = datetime.now(UTC) + timedelta(seconds=3)
    r = api.post(
        "/api/v1/messages",
        json={"title": "later", "channels": [webhook(api, sink)], "send_at": send_at.isoformat()},
    )
    assert r.status_code == 202 and r.json()["status"] == "scheduled"
    message = api.wait_message(r.json()["id"], FINAL, timeout=20)
    assert message["status"] == "delivered"
    arrived = sink.received()[0]["at"]
    assert arrived >= send_at.timestamp()


def test_a_scheduled_message_can_be_cancelled_and_is_never_sent(api, sink):
    send_at = datetime.now(UTC) + timedelta(seconds=2)
    r = api.post(
        "/api/v1/messages",
        json={"title": "never", "channels": [webhook(api, sink)], "send_at": send_at.isoformat()},
    )
    message_id = r.json()["id"]
    cancelled = api.post(f"/api/v1/messages/{message_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["deliveries"][0]["status"] == "cancelled"
    assert api.post(f"/api/v1/messages/{message_id}/cancel").status_code == 409
    probe = send(
        api,
        title="after",
        channels=[webhook(api, sink)],
        send_at=(send_at + timedelta(seconds=1)).isoformat(),
    )
    api.wait_message(probe, FINAL)
    assert [r["body"]["title"] for r in sink.received()] == ["after"]


def test_the_same_idempotency_key_returns_the_first_answer_and_a_different_body_is_a_conflict(
    api, sink
):
    hook = webhook(api, sink)
    headers = {"Idempotency-Key": "order-4711"}
    first = api.post(
        "/api/v1/messages", json={"title": "once", "channels": [hook]}, headers=headers
    )
    again = api.post(
        "/api/v1/messages", json={"title": "once", "channels": [hook]}, headers=headers
    )
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    other = api.post(
        "/api/v1/messages", json={"title": "twice", "channels": [hook]}, headers=headers
    )
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    api.wait_message(first.json()["id"], FINAL)
    assert len(sink.received()) == 1


def test_callback_url_gets_the_final_result_once(api, sink):
    callbacks = Sink()
    try:
        message_id = send(
            api, title="cb", channels=[webhook(api, sink)], callback_url=callbacks.url + "/done"
        )
        got = callbacks.wait_for(lambda rs: len(rs) >= 1)
        assert got[0]["body"]["id"] == message_id and got[0]["body"]["status"] == "delivered"
        assert got[0]["body"]["deliveries"][0]["status"] == "sent"
        api.wait_message(message_id, FINAL)
        second = send(api, title="probe", channels=[webhook(api, sink)])
        api.wait_message(second, FINAL)
        assert len(callbacks.received(None)) == 1
    finally:
        callbacks.close()


def test_the_webhook_is_signed_and_carries_the_delivery_id(api, sink):
    import hashlib
    import hmac

    hook = webhook(api, sink, secret="s3cret-signing")
    message_id = send(api, title="signed", body="**bold**", format="markdown", channels=[hook])
    api.wait_message(message_id, FINAL)
    request = sink.received()[0]
    expected = "sha256=" + hmac.new(b"s3cret-signing", request["raw"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-MessagePusher-Signature"] == expected
    delivery = api.get(f"/api/v1/messages/{message_id}").json()["deliveries"][0]
    assert request["headers"]["X-MessagePusher-Delivery"] == str(delivery["id"])
    assert request["body"]["format"] == "markdown" and request["body"]["priority"] == 3


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"title": "x", "priority": 9}, 422, "priority"),
        ({"title": "x", "priority": "high"}, 422, "priority"),
        ({"title": 5}, 422, "title"),
        ({"title": "x" * 300}, 422, "title"),
        ({"title": "x", "channels": ["no-such-channel"]}, 422, "channels"),
        ({"title": "x", "send_at": "tomorrow"}, 422, "send_at"),
        ({"title": "x", "send_at": "2026-12-01T09:00:00"}, 422, "send_at"),
        ({"title": "x", "url": "ftp://example.com/x"}, 422, "url"),
        ({"title": "x", "format": "pdf"}, 422, "format"),
        ({"title": "x", "ai": {"task": "dance"}}, 422, "ai.task"),
        ({"title": "x", "ai": {"task": "translate"}}, 422, "ai"),
        ({"title": "x", "ai": {"task": "summarize", "provider": "nope"}}, 422, "ai.provider"),
        ({"title": "x", "colour": "red"}, 422, "colour"),
        ({}, 422, "body"),
    ],
)
def test_bad_fields_are_422_naming_the_field(api, body, status, field):
    r = api.post("/api/v1/messages", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] in ("invalid_field", "unknown_channel", "no_channels")
    assert field in error["message"] or any(
        field in (d.get("field") or "") for d in error["details"] or []
    )


def test_malformed_json_oversized_bodies_and_bad_keys_get_the_error_shape(server, api):
    r = api.post(
        "/api/v1/messages", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    r = api.post("/api/v1/messages", data=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = api.post("/api/v1/messages", json={"title": "x", "body": "y" * 1_100_000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert server.client(None).post("/api/v1/messages", json={"title": "x"}).status_code == 401
    assert (
        server.client("mp_bad_key").post("/api/v1/messages", json={"title": "x"}).status_code == 401
    )
    assert server.client("nonsense").get("/api/v1/messages").status_code == 401
    r = api.get("/api/v1/messages/999999")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = api.get("/api/v1/messages?limit=0")
    assert r.status_code == 422 and "limit" in r.json()["error"]["message"]


def test_listing_filters_by_status_and_pages_with_a_cursor(api, sink):
    hook = webhook(api, sink)
    ids = [send(api, title=f"page {i}", channels=[hook]) for i in range(5)]
    for message_id in ids:
        api.wait_message(message_id, FINAL)
    first = api.get("/api/v1/messages?limit=2&status=delivered").json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = api.get(
        f"/api/v1/messages?limit=2&status=delivered&cursor={first['next_cursor']}"
    ).json()
    assert first["items"][-1]["id"] > second["items"][0]["id"]
    by_channel = api.get(f"/api/v1/messages?channel={hook}").json()["items"]
    assert sorted(m["id"] for m in by_channel) == sorted(ids)


def test_a_loopback_url_is_not_fetched_by_default_and_the_message_still_goes_out(
    server_factory, pages
):
    with FakeSmtp() as smtp:
        srv = server_factory({"MP_SECURITY__ALLOWED_PRIVATE_TARGETS": f"127.0.0.1:{smtp.port}"})
        api = srv.client(srv.create_key())
        r = api.post(
            "/api/v1/channels",
            json={
                "name": "mail",
                "type": "email",
                "config": {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "security": "none",
                    "from": "a@example.com",
                    "to": ["b@example.com"],
                },
            },
        )
        assert r.status_code == 201, r.text
        message_id = send(api, title="link", url=pages.url + "/article", channels=["mail"])
        message = api.wait_message(message_id, FINAL)
        assert message["status"] == "delivered"
        assert message["fetched"]["status"] == "error"
        assert "allow_private_networks" in message["fetched"]["error"]
        assert len(smtp.envelopes) == 1
        r = api.post(
            "/api/v1/channels",
            json={"name": "local", "type": "webhook", "config": {"url": pages.url + "/hook"}},
        )
        assert r.status_code == 422 and "allow_private_networks" in r.json()["error"]["message"]


def test_under_a_backlog_priority_5_messages_overtake_priority_1_messages_sent_earlier(
    server_factory,
):
    slow = Sink()
    slow.delay = 0.05
    try:
        srv = server_factory(
            {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_CHANNEL_POOL__WORKERS": "1"}
        )
        api = srv.client(srv.create_key())
        hook = webhook(api, slow)
        low = [send(api, title=f"low {i}", priority=1, channels=[hook]) for i in range(20)]
        high = [send(api, title=f"high {i}", priority=5, channels=[hook]) for i in range(5)]
        got = slow.wait_for(lambda rs: len(rs) >= 25, timeout=30)
        order = [r["body"]["id"] for r in got]
        last_high = max(order.index(h) for h in high)
        assert last_high < order.index(low[-1]), order
        assert sum(1 for message_id in order[: last_high + 1] if message_id in low) < 10
    finally:
        slow.close()


def test_kill_9_under_load_loses_no_accepted_message(server_factory, sink):
    import concurrent.futures

    import requests

    srv = server_factory({"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true"})
    key = srv.create_key()
    api = srv.client(key)
    hook = webhook(api, sink)
    accepted: list[int] = []
    stop_at = 2000

    def client(n: int) -> list[int]:
        mine: list[int] = []
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        for i in range(stop_at // 16):
            try:
                r = session.post(
                    srv.url + "/api/v1/messages",
                    json={"title": f"load {n}-{i}", "channels": [hook]},
                    timeout=10,
                )
            except requests.RequestException:
                break
            if r.status_code == 202:
                mine.append(r.json()["id"])
        return mine

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(client, n) for n in range(16)]
        deadline = time.monotonic() + 30
        while len(sink.received(None)) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.kill9()
        for f in futures:
            accepted.extend(f.result())
    assert 300 <= len(accepted) < stop_at + 1
    srv.start()
    wanted = set(accepted)
    sink.wait_for(lambda rs: wanted <= sink_ids(rs), timeout=30)


def sink_ids(requests_seen) -> set[int]:
    return {
        r["body"]["id"] for r in requests_seen if r["status"] == 200 and isinstance(r["body"], dict)
    }
