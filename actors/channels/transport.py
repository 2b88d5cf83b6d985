"""How the HTTP channels reach the network: keep-alive `http.client` connections per worker
thread, requests behind a proxy.

The send to the service is the largest single cost on the channel pool's hot path.
`http.client` on a kept-alive connection costs less than half the CPU per request of
urllib3 (itself a third less than requests; docs/benchmarks.md), and the pool needs
none of what those add: nothing is retried or redirected here, and every worker thread
keeps its own connection to each host, so there is no pool to share. A request that must
go through a proxy (the channel's `proxy` setting, or proxy variables in the environment)
still goes through requests, which knows proxies and `no_proxy`.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import certifi

from messagepusher.outbound.http_session import environment_has_proxies, new_session

# requests is imported on the first proxied request, not at start-up.
if TYPE_CHECKING:
    import requests

MAX_RESPONSE_BYTES = 64 * 1024  # a misbehaving peer must not fill our memory
READ_CHUNK = 16 * 1024
MAX_PARSED_URLS = 1024  # distinct target URLs remembered parsed; more start the memory over
HOSTS_PER_THREAD = 64  # kept-alive connections per worker thread; the oldest unused goes first
USER_AGENT = "MessagePusher"
DEFAULT_PORTS = {"http": 80, "https": 443}


class CallTimeout(Exception):
    """The service did not connect or answer within the timeout; worth retrying."""


class CallFailed(Exception):
    """The connection failed (refused, reset, DNS, TLS); worth retrying."""


class CallInvalid(Exception):
    """The request cannot be made as written (bad URL, bad header); retrying will not help."""


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes  # at most MAX_RESPONSE_BYTES


Target = tuple[str, str, int, str]  # scheme, host, port, path with query


def parse_target(url: str) -> Target:
    """(scheme, host, port, request path) of an http(s) URL (pure). Raises CallInvalid."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallInvalid(f"{url!r}: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise CallInvalid(f"{url!r}: not an http:// or https:// URL with a host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], path


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """True when a kept-alive connection's peer has closed it (or sent what nobody asked for)."""
    sock = connection.sock
    if sock is None:
        return False  # not open: the next request opens it
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class LeanHeaders:
    """A response's header lines as `HTTPResponse` reads them, without the email package.

    `http.client` hands the header block to `email.parser`, which builds a MIME message and
    was an eighth of the channel workers' time in the burst benchmark; the response needs
    only a case-insensitive first value and the lines in order. Obsolete folded lines
    (leading space or tab) continue the value above them, as the email parser reads them.
    """

    __slots__ = ("_lines",)

    def __init__(self, block: list[bytes]) -> None:
        lines: list[tuple[str, str]] = []
        for raw in block:
            line = raw.decode("iso-8859-1").rstrip("\r\n")
            if not line:
                continue
            if line[0] in " \t" and lines:
                name, value = lines[-1]
                lines[-1] = (name, f"{value} {line.strip()}")
                continue
            name, colon, value = line.partition(":")
            if colon:
                lines.append((name.strip(), value.strip()))
        self._lines = lines

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self._lines if k.lower() == wanted), default)

    def get_all(self, name: str, failobj: list[str] | None = None) -> list[str] | None:
        wanted = name.lower()
        return [v for k, v in self._lines if k.lower() == wanted] or failobj

    def items(self) -> list[tuple[str, str]]:
        return list(self._lines)


MAX_HEADER_LINE = 65536  # the limits http.client keeps
MAX_HEADER_LINES = 100


def read_header_block(fp) -> list[bytes]:
    """The header lines of a response up to the blank line (caller's thread, blocking).

    Raises http.client.LineTooLong or HTTPException past the standard library's limits.
    """
    lines: list[bytes] = []
    while True:
        line = fp.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return lines
        lines.append(line)
        if len(lines) > MAX_HEADER_LINES:
            raise http.client.HTTPException(f"got more than {MAX_HEADER_LINES} headers")


class LeanResponse(http.client.HTTPResponse):
    """`HTTPResponse` whose headers are `LeanHeaders`; the rest of `begin` as in the standard
    library (status line, 100 Continue skipped, chunked, keep-alive, length)."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            read_header_block(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = LeanHeaders(read_header_block(self.fp))
        self.chunked = (self.headers.get("transfer-encoding") or "").lower() == "chunked"
        self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class LeanConnection(http.client.HTTPConnection):
    response_class = LeanResponse


class LeanTlsConnection(http.client.HTTPSConnection):
    response_class = LeanResponse


class Transport:
    """Makes one HTTP request at a time per calling thread; safe to share between threads.

    Redirects are never followed (a redirect could lead past the private-network check)
    and nothing is retried here: the mailbox retries with back-off.
    """

    def __init__(
        self, pool_size: int = 32, trust_env: bool | None = None, ca_certs: str | None = None
    ):
        # The CA bundle requests uses (certifi), not the system's: a host without CA
        # certificates installed verifies HTTPS services as it did through requests.
        self.ca_certs = ca_certs or certifi.where()
        self.pool_size = pool_size  # the proxied path's pool; direct connections are per thread
        self.trust_env = environment_has_proxies() if trust_env is None else trust_env
        self._local = threading.local()
        self._tls: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self._open_connections: set[http.client.HTTPConnection] = set()
        self.connections_opened = 0
        # url -> its parsed target; plain dict reads and writes are atomic.
        self._targets: dict[str, Target] = {}

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float,
        proxy: str | None = None,
    ) -> RawAnswer:
        """Blocking I/O in the caller's thread. Raises CallTimeout, CallFailed or CallInvalid."""
        if proxy or self.trust_env:
            return self._through_requests(method, url, body, headers, timeout, proxy)
        target = self._targets.get(url)
        if target is None:
            target = parse_target(url)
            if len(self._targets) >= MAX_PARSED_URLS:
                self._targets.clear()
            self._targets[url] = target
        scheme, host, port, path = target
        connection = self._connection(scheme, host, port, timeout)
        try:
            connection.putrequest(method.upper(), path, skip_accept_encoding=True)
            if not any(name.lower() == "user-agent" for name in headers):
                connection.putheader("User-Agent", USER_AGENT)
            for name, value in headers.items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            data = response.read(MAX_RESPONSE_BYTES + 1)
            if len(data) > MAX_RESPONSE_BYTES or response.will_close:
                self._discard(connection)  # the rest is unread, or the peer said it closes
            return RawAnswer(
                response.status, dict(response.getheaders()), data[:MAX_RESPONSE_BYTES]
            )
        except TimeoutError as exc:
            self._discard(connection)
            raise CallTimeout(f"{host}:{port}: timed out after {timeout:g}s ({exc})") from None
        except ssl.SSLError as exc:
            self._discard(connection)
            raise CallFailed(f"{host}:{port}: TLS: {exc}") from None
        except (http.client.HTTPException, OSError) as exc:
            self._discard(connection)
            if isinstance(exc, http.client.InvalidURL):
                raise CallInvalid(str(exc)) from None
            raise CallFailed(f"{host}:{port}: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # a header value with CR/LF, a non-ASCII method or path
            self._discard(connection)
            raise CallInvalid(str(exc)) from None

    def _connection(
        self, scheme: str, host: str, port: int, timeout: float
    ) -> http.client.HTTPConnection:
        """This thread's kept-alive connection to the host, opened by its first request."""
        kept: OrderedDict | None = getattr(self._local, "connections", None)
        if kept is None:
            kept = self._local.connections = OrderedDict()
        key = (scheme, host, port)
        connection = kept.get(key)
        if connection is not None:
            kept.move_to_end(key)
            if _dropped(connection):
                connection.close()  # reopened by the request about to be made
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            return connection
        if scheme == "https":
            connection = LeanTlsConnection(host, port, timeout=timeout, context=self._tls_context())
        else:
            connection = LeanConnection(host, port, timeout=timeout)
        kept[key] = connection
        with self._lock:
            self._open_connections.add(connection)
            self.connections_opened += 1
        if len(kept) > HOSTS_PER_THREAD:
            _, oldest = kept.popitem(last=False)
            oldest.close()
            with self._lock:
                self._open_connections.discard(oldest)
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self.ca_certs)
        return self._tls

    def _discard(self, connection: http.client.HTTPConnection) -> None:
        """Close it; the thread's next request to that host opens a new one."""
        connection.close()

    def _through_requests(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float,
        proxy: str | None,
    ) -> RawAnswer:
        import requests  # only proxied requests need it: not imported at start-up

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = new_session(self.pool_size)
            if self.ca_certs != certifi.where():
                session.verify = self.ca_certs
        try:
            response = session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=timeout,
                proxies={"http": proxy, "https": proxy} if proxy else None,
                allow_redirects=False,
                stream=True,
            )
            with response:
                data = _read_capped(response)
        except requests.Timeout as exc:
            raise CallTimeout(str(exc)) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise CallFailed(str(exc)) from None
        except requests.RequestException as exc:
            raise CallInvalid(str(exc)) from None
        return RawAnswer(response.status_code, dict(response.headers), data)

    def close(self) -> None:
        """Close every thread's kept-alive connections (at teardown, after the workers stop)."""
        with self._lock:
            connections, self._open_connections = self._open_connections, set()
        for connection in connections:
            connection.close()


def _read_capped(response: requests.Response) -> bytes:
    # Reading to the end (not closing early) returns the connection to the keep-alive pool.
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(READ_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)[:MAX_RESPONSE_BYTES]
