"""A webhook sink: a real HTTP server on 127.0.0.1 that records what it receives.

Answers can be scripted per request (a status sequence), so tests can make it fail and recover.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _QuietServer(ThreadingHTTPServer):
    # A pool of 64 senders connects at once; socketserver's default backlog of 5 would reset
    # some of those connections before the sink ever read them.
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        pass  # a client killed mid-request (kill -9 tests) is expected, not news


class Sink:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[int] = []  # statuses to answer, in order; then default_status
        self.default_status = 200
        self.delay = 0.0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if sink.delay:
                    time.sleep(sink.delay)
                with sink.lock:
                    status = sink.script.pop(0) if sink.script else sink.default_status
                    try:
                        body = json.loads(raw) if raw else None
                    except ValueError:
                        body = raw.decode(errors="replace")
                    sink.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                            "raw": raw,
                            "status": status,
                            "at": time.time(),
                        }
                    )
                    sink.changed.notify_all()
                payload = b'{"ok": true}' if status < 400 else b'{"error": "scripted failure"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_PUT = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self, status: int | None = 200) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if status is None or r["status"] == status]

    def wait_for(self, predicate, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Block until predicate(requests) is true; returns the requests or raises AssertionError."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate(self.requests):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"sink: condition not met within {timeout}s; got {len(self.requests)} requests"
                    )
                self.changed.wait(remaining)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
