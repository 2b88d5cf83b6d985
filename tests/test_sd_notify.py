"""systemd notifications: the stdlib client, and READY/WATCHDOG/STATUS/STOPPING from a real server."""

from __future__ import annotations

import os
import time

import pytest
from support.notify import NotifySocket
from support.ops import until, webhook

from messagepusher.supervisor import sd_notify


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


def test_notify_sends_one_datagram_and_is_a_no_op_without_systemd(notify_socket, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.path)
    assert sd_notify.notify("READY=1\nSTATUS=up") is True
    until(lambda: notify_socket.received, 30, "the datagram")
    assert notify_socket.received[0][2] == "READY=1\nSTATUS=up"


def test_the_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sd_notify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert sd_notify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert sd_notify.watchdog_interval() is None


@pytest.mark.xdist_group("heavy")
def test_a_server_says_ready_feeds_the_watchdog_only_while_healthy_and_says_stopping(
    server_factory, sink, notify_socket
):
    server = server_factory(
        {
            "NOTIFY_SOCKET": notify_socket.path,
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_MONITOR__INTERVAL": "0.2",
            "MP_MONITOR__PING_DEADLINE_SECONDS": "2",
            "MP_FAULTS__CHANNEL_POOL__HANG_ON_NTH": "1",
        }
    )
    until(lambda: notify_socket.times("READY=1"), 30, "READY=1")
    until(lambda: len(notify_socket.times("WATCHDOG=1")) >= 3, 30, "periodic WATCHDOG=1")

    api = server.client(server.create_key())
    webhook(api, sink.url + "/in")
    hung_at = time.monotonic()
    api.post("/api/v1/messages", json={"title": "hangs the pool", "channels": ["hook"]})
    until(
        lambda: [t for t, _pid, s in notify_socket.received if s.startswith("STATUS=not ready")],
        30,
        "STATUS=not ready",
    )
    until(
        lambda: [t for t, _pid, s in notify_socket.received if s == "STATUS=ready" and t > hung_at],
        30,
        "ready again",
    )
    beats = [t for t in notify_socket.times("WATCHDOG=1") if t > hung_at]
    gaps = [b - a for a, b in zip([hung_at, *beats], beats, strict=False)]
    assert max(gaps) >= 0.8, f"the watchdog kept beating while channel_pool hung (gaps {gaps})"
    until(
        lambda: [t for t in notify_socket.times("WATCHDOG=1") if t > beats[-1]],
        30,
        "the watchdog beats again",
    )

    assert server.stop() == 0
    assert notify_socket.times("STOPPING=1")
