"""A message sent over the API reaches a webhook sink: the shortest whole path."""

from __future__ import annotations

from support.ops import webhook


def test_a_message_reaches_a_webhook_and_the_message_shows_delivered(private_server, sink):
    api = private_server.client(private_server.create_key())
    webhook(api, sink.url + "/in")
    sent = api.post(
        "/api/v1/messages", json={"title": "hello", "body": "world", "channels": ["hook"]}
    )
    assert sent.status_code == 202, sent.text
    message = api.wait_message(sent.json()["id"], ("delivered", "failed"))
    assert message["status"] == "delivered", message
    got = sink.received()
    assert (
        len(got) == 1
        and got[0]["body"]["id"] == sent.json()["id"]
        and got[0]["body"]["title"] == "hello"
    )
