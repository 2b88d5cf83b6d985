"""Tests for fetch_page against a real local HTTP server, and its pure helpers.

Only DNS is faked (netguard.resolve) where a name must look public; every byte is real HTTP.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from messagepusher.outbound import netguard
from messagepusher.outbound.page_fetch import (
    FetchResult,
    decode_body,
    fetch_page,
    parse_content_type,
    target_refusal,
)
from messagepusher.supervisor.config import FetcherSettings

ARTICLE = """<!doctype html><html><head><meta charset="utf-8">
<title>Disk full on db-1 | Ops blog</title></head><body>
<nav><a href="/">Home</a> <a href="/about">About</a></nav>
<article><h1>Disk full on db-1</h1>
<p>The primary database server ran out of disk space at three this morning, and writes
failed for twelve minutes before the on-call engineer was paged.</p>
<p>Old backups were removed and a new volume was attached; the service is back to normal
and no acknowledged data was lost.</p>
<p>Next week the team adds a disk-space alert at eighty percent so that this is caught
long before writes fail.</p></article>
<footer>Copyright the ops team</footer><script>var tracking = "never in the text";</script>
</body></html>"""

CHINESE = """<html><head><title>数据库磁盘告警</title></head><body><article>
<h1>数据库磁盘告警</h1>
<p>今天凌晨三点，主数据库服务器的磁盘空间耗尽，写入失败持续了十二分钟。</p>
<p>工程师删除了旧的备份并增加了一块新磁盘。服务已经恢复正常，没有丢失任何数据。</p>
<p>我们将在下周增加磁盘容量的监控告警，避免类似故障再次发生。值班人：朱镕。</p>
</article></body></html>"""

BIG = (
    "<html><head><title>Big page</title></head><body><article>"
    + "".join(
        f"<p>Paragraph {i}: line {i} of the long status report about disk usage on host {i}.</p>\n"
        for i in range(4000)
    )
    + "</article></body></html>"
)


class PageServer(ThreadingHTTPServer):
    """Serves the test pages on 127.0.0.1 and records every path it was asked for."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []
        self.release = threading.Event()
        self.routes: dict[str, Callable[[_Handler], None]] = {
            "/article": lambda h: h.send(200, "text/html; charset=utf-8", ARTICLE.encode()),
            "/plain": lambda h: h.send(200, "text/plain", b"line one\n\n\n   line two  \n"),
            "/r1": lambda h: h.redirect(302, "/r2"),
            "/r2": lambda h: h.redirect(301, f"{self.base}/article"),
            "/to-loopback": lambda h: h.redirect(302, f"http://127.0.0.1:{self.port}/article"),
            "/gbk": lambda h: h.send(200, "text/html", CHINESE.encode("gbk")),
            "/gb2312": lambda h: h.send(200, "text/html; charset=gb2312", CHINESE.encode("gbk")),
            "/big": lambda h: h.send(200, "text/html; charset=utf-8", BIG.encode()),
            "/binary": lambda h: h.send(200, "application/octet-stream", b"\x00\x01" * 4096),
            "/missing": lambda h: h.send(404, "text/html", b"<h1>no such page</h1>"),
            "/slow-headers": _slow_headers,
            "/slow-body": _slow_body,
        }

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up early (byte cap, timeout) is expected here, not an error."""


class _Handler(BaseHTTPRequestHandler):
    server: PageServer

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        if self.path.startswith("/loop/"):
            self.redirect(302, f"/loop/{int(self.path.rsplit('/', 1)[1]) + 1}")
            return
        route = self.server.routes.get(self.path)
        if route is None:
            self.send(404, "text/plain", b"unknown test page")
            return
        route(self)

    def send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, status: int, location: str) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests assert on `hits` instead."""


def _slow_headers(handler: _Handler) -> None:
    handler.server.release.wait(10)
    handler.send(200, "text/html", b"<p>too late</p>")


def _slow_body(handler: _Handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    handler.wfile.write(b"<html><body><p>first part")
    handler.wfile.flush()
    handler.server.release.wait(10)


@pytest.fixture
def server() -> Iterator[PageServer]:
    page_server = PageServer()
    thread = threading.Thread(target=page_server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield page_server
    page_server.release.set()
    page_server.shutdown()
    page_server.server_close()
    thread.join(5)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.trust_env = False  # no proxy from the environment between the test and its server
        yield http


SETTINGS = FetcherSettings(connect_timeout_seconds=2, read_timeout_seconds=2)


def fetch(
    url: str, session: requests.Session, settings: FetcherSettings = SETTINGS, **kw
) -> FetchResult:
    return fetch_page(url, settings, kw.pop("allow_private_networks", True), session, **kw)


def test_an_article_gives_its_title_and_readable_text_without_navigation_or_scripts(
    server, session
):
    result = fetch(f"{server.base}/article", session)

    assert result.status == "ok", result.error
    assert result.error is None
    assert result.title == "Disk full on db-1"
    assert "ran out of disk space" in result.text
    assert "disk-space alert at eighty percent" in result.text
    assert "tracking" not in result.text
    assert result.http_status == 200
    assert result.content_type == "text/html"
    assert result.final_url == f"{server.base}/article"
    assert result.bytes == len(ARTICLE.encode())
    assert result.truncated is False


def test_a_plain_text_page_is_kept_as_text_with_tidied_whitespace(server, session):
    result = fetch(f"{server.base}/plain", session)

    assert result.status == "ok"
    assert result.title is None
    assert result.text == "line one\n\nline two"


def test_a_redirect_chain_is_followed_to_the_final_page(server, session):
    result = fetch(f"{server.base}/r1", session)

    assert result.status == "ok", result.error
    assert result.final_url == f"{server.base}/article"
    assert result.title == "Disk full on db-1"
    assert server.hits == ["/r1", "/r2", "/article"]


def test_more_than_five_redirects_is_an_error_after_six_requests(server, session):
    result = fetch(f"{server.base}/loop/0", session)

    assert result.status == "error"
    assert "more than 5 times" in result.error
    assert "fetcher.max_redirects" in result.error
    assert server.hits == [f"/loop/{i}" for i in range(6)]


def test_no_redirect_is_followed_when_max_redirects_is_zero(server, session):
    settings = SETTINGS.model_copy(update={"max_redirects": 0})
    result = fetch(f"{server.base}/r1", session, settings)

    assert result.status == "error"
    assert "more than 0 times" in result.error
    assert server.hits == ["/r1"]


def test_loopback_is_refused_with_default_settings_naming_the_setting(server, session):
    result = fetch(f"{server.base}/article", session, allow_private_networks=False)

    assert result.status == "error"
    assert "allow_private_networks" in result.error
    assert "127.0.0.1" in result.error
    assert server.hits == []


def test_a_redirect_from_a_public_host_to_loopback_is_refused_at_that_hop(
    server, session, monkeypatch
):
    real_resolve = netguard.resolve

    def fake_dns(host: str, port: int | None = None) -> list[str]:
        # "localhost" plays a public web site; every other name resolves for real.
        return ["93.184.216.34"] if host == "localhost" else real_resolve(host, port)

    monkeypatch.setattr(netguard, "resolve", fake_dns)
    result = fetch(
        f"http://localhost:{server.port}/to-loopback", session, allow_private_networks=False
    )

    assert result.status == "error"
    assert "allow_private_networks" in result.error
    assert result.final_url == f"http://127.0.0.1:{server.port}/article"
    assert server.hits == ["/to-loopback"]


def test_a_gbk_page_without_a_declared_charset_is_detected_and_decoded(server, session):
    result = fetch(f"{server.base}/gbk", session)

    assert result.status == "ok", result.error
    assert result.title == "数据库磁盘告警"
    assert "主数据库服务器的磁盘空间耗尽" in result.text


def test_a_page_declared_gb2312_is_decoded_as_gb18030_so_gbk_only_characters_survive(
    server, session
):
    result = fetch(f"{server.base}/gb2312", session)

    assert result.status == "ok", result.error
    assert "值班人：朱镕" in result.text


def test_a_page_over_max_bytes_is_cut_there_and_its_first_part_extracted(server, session):
    settings = SETTINGS.model_copy(update={"max_bytes": 4096})
    result = fetch(f"{server.base}/big", session, settings)

    assert result.status == "ok", result.error
    assert result.truncated is True
    assert result.bytes == 4096
    assert "Paragraph 0:" in result.text
    assert "Paragraph 3999:" not in result.text


def test_text_is_limited_to_text_limit_chars(server, session):
    settings = SETTINGS.model_copy(update={"text_limit_chars": 100})
    result = fetch(f"{server.base}/big", session, settings)

    assert result.status == "ok"
    assert len(result.text) == 100


def test_a_binary_content_type_is_refused_by_name_without_reading_the_body(server, session):
    result = fetch(f"{server.base}/binary", session)

    assert result.status == "error"
    assert "application/octet-stream" in result.error
    assert "text/html and text/plain" in result.error
    assert result.content_type == "application/octet-stream"
    assert result.bytes == 0


def test_an_http_error_status_is_an_error_with_the_status(server, session):
    result = fetch(f"{server.base}/missing", session)

    assert result.status == "error"
    assert "HTTP 404" in result.error
    assert result.http_status == 404


def test_a_server_slow_to_answer_hits_the_read_timeout(server, session):
    settings = SETTINGS.model_copy(update={"read_timeout_seconds": 0.3})
    result = fetch(f"{server.base}/slow-headers", session, settings)

    assert result.status == "error"
    assert "timed out after 0.3s" in result.error
    assert "fetcher.read_timeout_seconds" in result.error


def test_a_body_that_stalls_midway_hits_the_read_timeout(server, session):
    settings = SETTINGS.model_copy(update={"read_timeout_seconds": 0.3})
    result = fetch(f"{server.base}/slow-body", session, settings)

    assert result.status == "error"
    assert "fetcher.read_timeout_seconds" in result.error
    assert result.http_status == 200


def test_a_fetch_that_outlasts_its_total_budget_is_stopped(server, session):
    ticks = itertools.count()  # every look at the clock is one second later
    settings = SETTINGS.model_copy(update={"connect_timeout_seconds": 1, "read_timeout_seconds": 2})
    result = fetch(f"{server.base}/big", session, settings, clock=lambda: float(next(ticks)))

    assert result.status == "error"
    assert "longer than 3s in total" in result.error
    assert 0 < result.bytes < len(BIG)


def test_a_refused_connection_is_an_error_naming_the_host(session):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = fetch(f"http://127.0.0.1:{port}/", session)

    assert result.status == "error"
    assert result.error.startswith("cannot connect to 127.0.0.1")


def test_a_name_that_does_not_resolve_is_an_error(session, monkeypatch):
    def no_such_host(host: str, port: int | None = None) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(netguard, "resolve", no_such_host)
    result = fetch("https://no-such-host.example/", session, allow_private_networks=False)

    assert result.status == "error"
    assert "cannot resolve the host" in result.error


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://example.com/file", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http:///path", "has no host"),
        ("http://[::1/", "not a valid URL"),
    ],
)
def test_urls_that_are_not_http_pages_are_refused_before_any_request(url, expected):
    assert expected in target_refusal(url, allow_private_networks=True)


def test_content_type_parsing_reads_the_mime_type_and_a_quoted_charset():
    assert parse_content_type('Text/HTML; charset="GBK"') == ("text/html", "gbk")
    assert parse_content_type("text/plain") == ("text/plain", None)
    assert parse_content_type("") == ("", None)


def test_the_declared_charset_wins_over_the_meta_tag_and_the_meta_tag_over_detection():
    page = '<html><head><meta charset="koi8-r"></head><body>Привет</body></html>'

    assert "Привет" in decode_body(page.encode("koi8-r"), None, sniff_meta=True)
    assert "Привет" in decode_body(page.encode("cp1251"), "windows-1251", sniff_meta=True)


def test_an_unknown_declared_charset_falls_back_to_detection():
    assert decode_body("héllo wörld".encode(), "no-such-charset", sniff_meta=False) == "héllo wörld"
