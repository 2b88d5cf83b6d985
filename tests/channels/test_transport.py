"""The channels' transport: http.client directly, requests behind a proxy, answers capped, errors sorted."""

from __future__ import annotations

import http.client
import io
import re
import socket
import ssl
import threading

import certifi
import pytest
from fakes.channel_services import Reply, WebhookSink, self_signed_cert
from fakes.forward_proxy import ForwardProxy
from support.ops import until

from messagepusher.actors.channels import build_channel
from messagepusher.actors.channels.base import SendContext
from messagepusher.actors.channels.transport import (
    MAX_RESPONSE_BYTES,
    CallFailed,
    CallInvalid,
    CallTimeout,
    LeanHeaders,
    Transport,
)


def test_an_oversized_answer_is_cut_and_the_pool_still_works(transport) -> None:
    with WebhookSink() as fake:
        fake.script(Reply(200, b"x" * (MAX_RESPONSE_BYTES * 3)), Reply(201, "second"))
        first = transport.request("POST", f"{fake.url}/big", b"{}", {}, 5.0)
        second = transport.request("POST", f"{fake.url}/next", b"{}", {}, 5.0)
    assert first.status == 200 and first.body == b"x" * MAX_RESPONSE_BYTES
    assert (second.status, second.body) == (201, b"second")
    assert [r.path for r in fake.requests] == ["/big", "/next"]


def test_keep_alive_reuses_one_connection(transport) -> None:
    with WebhookSink() as fake:
        for _ in range(5):
            assert transport.request("POST", f"{fake.url}/hook", b"{}", {}, 5.0).status == 200
    assert transport.connections_opened == 1


def test_a_redirect_is_returned_not_followed(transport) -> None:
    with WebhookSink() as fake:
        fake.script(Reply(302, "", {"Location": f"{fake.url}/elsewhere"}))
        answer = transport.request("POST", f"{fake.url}/hook", b"{}", {}, 5.0)
    assert answer.status == 302 and answer.headers["Location"].endswith("/elsewhere")
    assert len(fake.requests) == 1


def test_errors_are_sorted_into_timeout_failed_and_invalid(transport) -> None:
    with WebhookSink() as fake:
        fake.script(Reply(hang=True))
        with pytest.raises(CallTimeout):
            transport.request("POST", f"{fake.url}/slow", b"{}", {}, 0.3)
        with pytest.raises(CallInvalid):
            transport.request(
                "POST", f"{fake.url}/hook", b"{}", {"X-Bad": "a\r\nInjected: yes"}, 5.0
            )
    with pytest.raises(CallFailed):
        transport.request("POST", fake.url + "/gone", b"{}", {}, 5.0)  # the fake has stopped


def test_a_channel_proxy_carries_the_request(transport, make_message) -> None:
    ctx = SendContext(
        delivery_id=7, transport=transport, timeout_seconds=5.0, allow_private_networks=True
    )
    with WebhookSink() as sink, ForwardProxy() as proxy:
        channel = build_channel("webhook", {"url": f"{sink.url}/hook", "proxy": proxy.url})
        result = channel.send(make_message(), ctx)
    assert result.status == "sent"
    assert proxy.seen == [("POST", f"{sink.url}/hook")]
    assert sink.requests[0].headers["x-messagepusher-delivery"] == "7"


def test_proxy_variables_in_the_environment_are_honoured(monkeypatch) -> None:
    with WebhookSink() as sink, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        trusting = Transport(pool_size=1)
        try:
            answer = trusting.request("POST", f"{sink.url}/hook", b"{}", {}, 5.0)
        finally:
            trusting.close()
    assert trusting.trust_env and answer.status == 200
    assert proxy.seen == [("POST", f"{sink.url}/hook")]


@pytest.fixture
def https_sink(tmp_path):
    """A WebhookSink behind TLS with a self-signed certificate for 127.0.0.1."""
    cert, key = self_signed_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    fake = WebhookSink()
    fake.server.socket = context.wrap_socket(fake.server.socket, server_side=True)
    with fake:
        yield fake, str(cert), fake.url.replace("http://", "https://")


def test_https_certificates_are_verified_against_certifi_by_default(transport, https_sink) -> None:
    _fake, _cert, url = https_sink
    assert transport.ca_certs == certifi.where()
    with pytest.raises(CallFailed, match="CERTIFICATE_VERIFY_FAILED"):
        transport.request("POST", f"{url}/hook", b"{}", {}, 5.0)


@pytest.mark.parametrize("through_requests", [False, True])
def test_https_to_a_trusted_certificate_is_sent(https_sink, through_requests) -> None:
    fake, cert, url = https_sink
    trusting = Transport(pool_size=1, trust_env=through_requests, ca_certs=cert)
    try:
        answer = trusting.request("POST", f"{url}/hook", b"{}", {}, 5.0)
    finally:
        trusting.close()
    assert answer.status == 200 and fake.requests[0].path == "/hook"


class ClosingPeer:
    """Answers one request per connection, then closes it, as a server that drops idle
    keep-alive connections does between two sends. Counts the connections it accepted."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.accepted = 0
        self.closed = 0
        self.heads: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.heads.append(head)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                # no Connection: close header: the client believes it may keep the connection
            self.closed += 1

    def close(self) -> None:
        self.server.close()


def test_a_connection_the_peer_closed_while_idle_is_reopened_not_failed(transport) -> None:
    peer = ClosingPeer()
    try:
        for n in range(3):
            answer = transport.request("POST", f"{peer.url}/hook", b"{}", {}, 5.0)
            assert (answer.status, answer.body) == (200, b"ok")
            assert (peer.accepted, len(peer.heads)) == (n + 1, n + 1)  # a new connection each
            until(lambda n=n: peer.closed == n + 1, 10, "the peer closed the idle connection")
    finally:
        peer.close()
    assert peer.accepted == 3


def test_requests_carry_a_user_agent_unless_the_channel_sets_its_own(transport) -> None:
    with WebhookSink() as fake:
        transport.request("POST", f"{fake.url}/a", b"{}", {}, 5.0)
        transport.request("POST", f"{fake.url}/b", b"{}", {"User-Agent": "DiscordBot (x, 1)"}, 5.0)
    assert [r.headers["user-agent"] for r in fake.requests] == [
        "MessagePusher",
        "DiscordBot (x, 1)",
    ]


def test_a_url_that_is_not_http_is_invalid_before_anything_is_sent(transport) -> None:
    for url in ("ftp://example.com/x", "http:///nohost", "http://[::1/broken"):
        with pytest.raises(CallInvalid):
            transport.request("POST", url, b"{}", {}, 5.0)


class RawPeer:
    """Answers each request with the next of its scripted raw answers, byte for byte; an
    answer marked `close` is followed by closing the connection."""

    def __init__(self, *answers: tuple[bytes, bool]) -> None:
        self.answers = list(answers)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while self.answers:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if b"\r\n\r\n" not in data:
                        break
                    head, _, data = data.partition(b"\r\n\r\n")
                    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                    while len(data) < length:
                        data += conn.recv(65536)
                    data = data[length:]
                    raw, close = self.answers.pop(0)
                    conn.sendall(raw)
                    if close:
                        break

    def close(self) -> None:
        self.server.close()


def test_answers_are_read_as_the_standard_library_reads_them_without_the_email_parser(
    transport,
) -> None:
    peer = RawPeer(
        (  # chunked, a repeated header and one folded over two lines
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Tag: a\r\nx-tag: b\r\n"
            b"X-Folded: one\r\n  two\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            False,
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nRetry-After: 7\r\n"
            b"Content-Length: 4\r\n\r\nslow",
            False,
        ),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close", True),
    )
    try:
        chunked = transport.request("POST", f"{peer.url}/a", b"{}", {}, 5.0)
        assert (chunked.status, chunked.body) == (200, b"abcde")
        assert (chunked.headers["X-Tag"], chunked.headers["x-tag"]) == (
            "a",
            "b",
        ) and chunked.headers["X-Folded"] == "one two"
        limited = transport.request("POST", f"{peer.url}/b", b"{}", {}, 5.0)
        assert (limited.status, limited.headers["Retry-After"], limited.body) == (429, "7", b"slow")
        empty = transport.request("POST", f"{peer.url}/c", b"{}", {}, 5.0)
        assert (empty.status, empty.body) == (204, b"")
        old = transport.request("POST", f"{peer.url}/d", b"{}", {}, 5.0)
        assert (old.status, old.body) == (200, b"until the close")
    finally:
        peer.close()
    assert transport.connections_opened == 1  # kept alive until the HTTP/1.0 answer


def test_lean_headers_agree_with_the_email_parser_on_unfolded_headers() -> None:
    block = (
        b"Content-Type: application/json; charset=utf-8\r\nSet-Cookie: a=1\r\n"
        b"set-cookie: b=2\r\nX-Empty:\r\nX-Padded:   wide  \r\nnot a header line\r\n\r\n"
    )
    lean = LeanHeaders(block.splitlines(keepends=True))
    standard = http.client.parse_headers(io.BytesIO(block))
    assert lean.items() == [(k, v.strip()) for k, v in standard.items()]
    for name in ("content-type", "SET-COOKIE", "x-empty", "x-padded", "missing"):
        value, values = standard.get(name), standard.get_all(name)
        assert lean.get(name) == (value.strip() if value is not None else None)  # OWS trimmed
        assert lean.get_all(name) == ([v.strip() for v in values] if values else None)


def test_an_answer_past_the_header_limits_fails_the_call_and_the_next_connects_afresh(
    transport,
) -> None:
    flood = b"".join(b"X-%d: v\r\n" % n for n in range(101))
    peer = RawPeer(
        (b"HTTP/1.1 200 OK\r\n" + flood + b"Content-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"v" * 70_000 + b"\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    )
    try:
        with pytest.raises(CallFailed, match="more than 100 headers"):
            transport.request("POST", f"{peer.url}/a", b"{}", {}, 5.0)
        with pytest.raises(CallFailed, match="header line"):
            transport.request("POST", f"{peer.url}/b", b"{}", {}, 5.0)
        assert transport.request("POST", f"{peer.url}/c", b"{}", {}, 5.0).body == b"ok"
    finally:
        peer.close()
