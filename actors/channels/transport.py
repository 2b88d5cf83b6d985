"""How the HTTP channels reach the network: one shared urllib3 pool, requests behind a proxy.

urllib3 is the transport under requests; called directly it costs about a third
less CPU per request (docs/benchmarks.md), which on the channel pool's hot path is
the largest single cost. A request that must go through a proxy (the channel's
`proxy` setting, or proxy variables in the environment) still goes through
requests, which knows proxies and `no_proxy`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import certifi

from messagepusher.outbound.http_session import environment_has_proxies, new_session

# urllib3 and requests are imported on the first request, not at start-up.
if TYPE_CHECKING:
    import requests
    import urllib3

MAX_RESPONSE_BYTES = 64 * 1024  # a misbehaving peer must not fill our memory
READ_CHUNK = 16 * 1024
MAX_PARSED_URLS = 1024  # distinct target URLs remembered parsed; more start the memory over


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
        self.pool_size = pool_size
        self.trust_env = environment_has_proxies() if trust_env is None else trust_env
        self._local = threading.local()
        self._pool: urllib3.PoolManager | None = None
        self._pool_lock = threading.Lock()
        # url -> (scheme, host, port, request_uri); plain dict reads and writes are atomic.
        self._targets: dict[str, tuple[str, str | None, int | None, str]] = {}

    @property
    def pool(self) -> urllib3.PoolManager:
        """The keep-alive pools of every host, made by the first request in any thread."""
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    import urllib3

                    self._pool = urllib3.PoolManager(
                        num_pools=64,
                        maxsize=self.pool_size,
                        block=False,
                        retries=False,
                        cert_reqs="CERT_REQUIRED",
                        ca_certs=self.ca_certs,
                    )
        return self._pool

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
        pool = self.pool
        import urllib3  # loaded by self.pool: a look-up, not an import

        try:
            response = self._open(pool, method.upper(), url, body, headers, timeout)
            try:
                data = response.read(MAX_RESPONSE_BYTES + 1)
            except BaseException:
                response.close()
                raise
            else:
                if len(data) > MAX_RESPONSE_BYTES:
                    response.close()  # the rest is unread: this connection cannot carry another request
            finally:
                response.release_conn()  # back to the pool (a closed one reconnects on its next use)
        # NewConnectionError (refused, DNS) subclasses TimeoutError in urllib3: test it first.
        except urllib3.exceptions.NewConnectionError as exc:
            raise CallFailed(str(exc)) from None
        except urllib3.exceptions.TimeoutError as exc:
            raise CallTimeout(str(exc)) from None
        except (urllib3.exceptions.LocationValueError, ValueError) as exc:
            raise CallInvalid(str(exc)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise CallFailed(str(exc)) from None
        return RawAnswer(response.status, dict(response.headers), data[:MAX_RESPONSE_BYTES])

    def _open(
        self,
        pool: urllib3.PoolManager,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float,
    ) -> urllib3.BaseHTTPResponse:
        """The request on the host's keep-alive pool, the URL parsed once per distinct URL.

        What `PoolManager.request` does for a body and no redirects, without parsing the
        same webhook URL and copying the headers again on every send. A URL without a
        scheme takes the manager's own path (it warns). Raises urllib3's errors.
        """
        import urllib3

        target = self._targets.get(url)
        if target is None:
            parsed = urllib3.util.parse_url(url)
            if parsed.scheme is None:
                return pool.request(
                    method,
                    url,
                    body=body,
                    headers=headers,
                    timeout=urllib3.Timeout(connect=timeout, read=timeout),
                    retries=False,
                    redirect=False,
                    preload_content=False,
                )
            target = (parsed.scheme, parsed.host, parsed.port, parsed.request_uri)
            if len(self._targets) >= MAX_PARSED_URLS:
                self._targets.clear()
            self._targets[url] = target
        scheme, host, port, request_uri = target
        return pool.connection_from_host(host, port=port, scheme=scheme).urlopen(
            method,
            request_uri,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
        )

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
        if self._pool is not None:
            self._pool.clear()


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
