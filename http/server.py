"""The waitress server in its own thread, and its graceful stop.

Waitress's per-request "Task queue depth" warnings become a gauge and a rate-limited log line,
without passing through `logging`.
"""

from __future__ import annotations

import logging
import threading
import time

from waitress.channel import HTTPChannel
from waitress.server import create_server

from messagepusher.http.app import create_app
from messagepusher.supervisor.clock import Clock

log = logging.getLogger(__name__)


def _proxy_options(trusted_proxy: str) -> dict[str, object]:
    """Waitress options that take the scheme from a trusted proxy's X-Forwarded-Proto."""
    if not trusted_proxy:
        return {}
    return {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": {"x-forwarded-proto"}}


class QueueDepthLog:
    """Stands in for waitress's queue logger: keeps the depth as a gauge and one warning a minute.

    Waitress warns "Task queue depth is N" on every request that finds no idle worker, which
    under a burst is nearly every request; through `logging` each warning built a LogRecord
    (stack walk included) only to be filtered out. Runs in waitress's `http` thread.
    """

    def __init__(self, gauge, clock: Clock, every_seconds: float = 60.0):
        self.clock = clock
        self.gauge = gauge
        self.every = every_seconds
        self.last_warned = 0.0
        self.suppressed = 0

    def warning(self, message: str, depth: int, *args: object) -> None:
        self.gauge.set(depth)
        now = self.clock.monotonic()
        if now - self.last_warned >= self.every:
            self.last_warned = now
            log.warning(
                "HTTP requests are queueing: %d waiting for a worker thread (%d such notices "
                "suppressed since the last)",
                depth,
                self.suppressed,
            )
            self.suppressed = 0
        else:
            self.suppressed += 1


class HttpServer:
    def __init__(self, runtime):
        self.runtime = runtime
        settings = runtime.settings.server
        self.app = create_app(runtime)
        # A worker under a root serves on the socket the root bound; a process alone binds its own.
        inherited = getattr(runtime, "listen_socket", None)
        where = (
            {"sockets": [inherited]}
            if inherited
            else {"host": settings.host, "port": settings.port}
        )
        self.server = create_server(
            self.app,
            **where,
            threads=settings.threads,
            connection_limit=settings.connection_limit,
            channel_timeout=60,
            ident="MessagePusher",
            max_request_body_size=2 * settings.max_body_bytes + 65_536,
            clear_untrusted_proxy_headers=True,
            **_proxy_options(settings.trusted_proxy),
        )
        self.port = int(self.server.effective_port)
        self.thread: threading.Thread | None = None
        self.depth_log = QueueDepthLog(runtime.metrics.http_queue_depth, runtime.clock)
        self.server.task_dispatcher.queue_logger = self.depth_log

    def start(self) -> None:
        self.thread = threading.Thread(target=self._serve, name="http", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.server.run()
        except OSError:
            # run() ends with EBADF once stop() closed the sockets
            if self.runtime.accepting:
                raise

    def _client_channels(self) -> list:
        return [c for c in list(self.server._map.values()) if isinstance(c, HTTPChannel)]

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop accepting, answer the requests in flight, close every connection, then the server.

        Runs in the main thread. Keep-alive connections are closed once their last response is
        written, so no new request starts; what still runs after the grace period is cut.
        """
        self.server.accepting = False
        for channel in self._client_channels():
            channel.close_when_flushed = True
        self.server.pull_trigger()
        clock = self.runtime.clock
        deadline = clock.monotonic() + grace_seconds
        while self._client_channels() and clock.monotonic() < deadline:
            time.sleep(0.02)
        self.server.close()
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
