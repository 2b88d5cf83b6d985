"""Stream slots, the stream loop and the listen client's parser, driven without a server or threads."""

from __future__ import annotations

import json

import pytest

from messagepusher.http.errors import APIError
from messagepusher.http.sse import KEEPALIVE, Event, StreamSlots, encode, run_stream
from messagepusher.operations.listen import parse_events, render


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wait(self, seconds: float) -> bool:
        self.t += seconds
        return False


def test_slots_refuse_past_the_per_user_and_the_total_limit_and_free_on_release():
    seen = []
    slots = StreamSlots(per_user=2, total=3, retry_after=15, on_change=seen.append)
    slots.acquire(1)
    slots.acquire(1)
    with pytest.raises(APIError) as mine:
        slots.acquire(1)
    assert mine.value.status == 429
    assert mine.value.details["setting"] == "streams.max_per_user"
    assert mine.value.headers["Retry-After"] == "15"
    slots.acquire(2)
    with pytest.raises(APIError) as total:
        slots.acquire(3)
    assert total.value.details["setting"] == "streams.max_total"
    slots.release(1)
    slots.acquire(3)
    assert seen == [1, 2, 3, 2, 3]


def test_the_stream_sends_events_keeps_alive_when_quiet_and_ends_after_max_seconds():
    clock = Clock()
    batches = [[Event("1", "message", {"n": 1}), Event("2", "message", {"n": 2})]]
    closed = []
    body = list(
        run_stream(
            lambda: batches.pop(0) if batches else [],
            keepalive_seconds=2,
            max_seconds=5,
            poll_seconds=0.5,
            wait=clock.wait,
            now=clock.now,
            on_close=lambda: closed.append(True),
        )
    )
    assert body[0] == b"retry: 1500\n\n"
    assert [json.loads(b.split(b"data: ")[1]) for b in body[1:3]] == [{"n": 1}, {"n": 2}]
    assert body[3:] == [KEEPALIVE, KEEPALIVE]  # at 2 s and 4 s of quiet, then the end at 5 s
    assert closed == [True]


def test_the_stream_ends_when_the_server_stops_and_when_the_client_goes():
    closed = []
    stopping = run_stream(
        lambda: [], 10, 60, 0.5, lambda s: True, lambda: 0.0, lambda: closed.append(1)
    )
    assert list(stopping) == [b"retry: 1500\n\n"]
    gone = run_stream(
        lambda: [], 10, 60, 0.5, lambda s: False, lambda: 0.0, lambda: closed.append(2)
    )
    next(gone)
    gone.close()  # what waitress does when the client disconnected
    assert closed == [1, 2]


def test_events_round_trip_through_the_listen_parser_even_with_newlines_in_the_data():
    wire = encode(Event("7", "message", {"title": "a\nb", "body": "x"})) + KEEPALIVE
    wire += b"id: 8\nevent: alert\ndata: {}\n\n"
    events = list(parse_events(wire.decode().split("\n")))
    assert [(e.id, e.name) for e in events] == [("7", "message"), ("8", "alert")]
    assert json.loads(events[0].data) == {"title": "a\nb", "body": "x"}
    assert render({"title": "t", "body": "b", "url": "https://x", "created_at": "T"}) == (
        "[T] t\nb\nhttps://x\n"
    )


def test_a_failing_read_ends_the_stream_cleanly_and_frees_its_slot():
    closed = []

    def broken() -> list:
        raise OSError("database is locked")

    body = list(
        run_stream(broken, 10, 60, 0.5, lambda s: False, lambda: 0.0, lambda: closed.append(1))
    )
    assert body == [b"retry: 1500\n\n"] and closed == [1]
