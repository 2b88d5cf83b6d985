"""A real HTTP server on 127.0.0.1 that answers POST /v1/chat/completions like OpenAI.

Records every request; replies are scripted in order (content, error status, raw body,
a stall until the fake closes), and an unscripted request gets DEFAULT_CONTENT.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_CONTENT = "A fake summary."


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON, or the raw text when it was not JSON


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content: str | None = None  # set: answer a completion with this text for the request's model
    stall: bool = False  # hold the request until the fake closes (client timeouts)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (a timeout test) is expected here, not an error."""


class FakeOpenAI:
    """Use as a context manager; `base_url` is what a provider's base_url is set to."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._script: deque[_Reply] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def reply(self, content: str) -> None:
        """The next request is answered 200 with a completion whose content is `content`."""
        self._push(_Reply(200, content=content))

    def fail(
        self, status: int, message: str = "scripted failure", retry_after: int | None = None
    ) -> None:
        """The next request is answered `status` with an OpenAI-shaped error body."""
        body = {"error": {"message": message, "type": "fake_error", "code": status}}
        headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
        self._push(_Reply(status, json.dumps(body).encode(), headers))

    def reply_raw(self, status: int, body: bytes) -> None:
        """The next request is answered `status` with exactly `body` as JSON content."""
        self._push(_Reply(status, body))

    def stall(self) -> None:
        """The next request gets no answer until the fake closes (at most 10 s)."""
        self._push(_Reply(503, stall=True))

    def _push(self, reply: _Reply) -> None:
        with self._lock:
            self._script.append(reply)

    def _answer(self, request: RecordedRequest) -> _Reply:
        with self._lock:
            self.requests.append(request)
            if request.path != "/v1/chat/completions":
                error = {"error": {"message": f"no route {request.path}", "type": "not_found"}}
                return _Reply(404, json.dumps(error).encode())
            scripted = self._script.popleft() if self._script else None
        if scripted is None:
            scripted = _Reply(200, content=DEFAULT_CONTENT)
        if scripted.stall:
            self._closing.wait(10)
        if scripted.content is None:
            return scripted
        return _Reply(200, json.dumps(_completion(request.body, scripted.content)).encode())


def _completion(body: Any, content: str) -> dict[str, Any]:
    model = body.get("model", "fake-model") if isinstance(body, dict) else "fake-model"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _handler_for(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            self._send(fake._answer(RecordedRequest(self.path, dict(self.headers.items()), body)))

        def _send(self, reply: _Reply) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: tests read `fake.requests` instead."""

    return Handler
