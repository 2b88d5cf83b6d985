"""A fast local webhook sink for bench/load.py: raw asyncio HTTP/1.1 with keep-alive.

Records each message id's first arrival (time.monotonic()); /_count, /_reset and /_dump control it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
MAX_HEAD = 64 * 1024


def _answer(status: int, payload: dict | None = None) -> bytes:
    body = json.dumps(payload or {}).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Sink:
    def __init__(self, out: Path):
        self.out = out
        self.reset()

    def reset(self) -> None:
        self.first: dict[str, float] = {}  # message id -> monotonic time of its first arrival
        self.posts = 0
        self.dups = 0
        self.bad = 0
        self.last = 0.0

    def stats(self) -> dict:
        return {
            "unique": len(self.first),
            "posts": self.posts,
            "dups": self.dups,
            "bad": self.bad,
            "last": self.last,
        }

    def record(self, body: bytes, now: float) -> None:
        try:
            key = str(json.loads(body)["id"])
        except (ValueError, KeyError, TypeError):
            self.bad += 1
            return
        self.posts += 1
        if key in self.first:
            self.dups += 1
        else:
            self.first[key] = now
            self.last = now

    def control(self, method: str, target: str) -> bytes:
        if target == "/_count":
            return _answer(200, self.stats())
        if target == "/_reset" and method == "POST":
            self.reset()
            return _answer(200, self.stats())
        if target == "/_dump" and method == "POST":
            tmp = self.out.with_suffix(".tmp")
            tmp.write_text(json.dumps({**self.stats(), "first": self.first}))
            os.replace(tmp, self.out)
            return _answer(200, self.stats())
        return _answer(404, {"error": "unknown control path"})

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    writer.write(_answer(400, {"error": "bad request line"}))
                    return
                method, target, version = parts
                length, chunked = 0, False
                close = version == "HTTP/1.0"
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "transfer-encoding" and "chunked" in value.lower():
                        chunked = True
                    elif name == "connection":
                        close = value.strip().lower() == "close"
                body = await (self._chunked(reader) if chunked else reader.readexactly(length))
                now = time.monotonic()
                if target.startswith("/_"):
                    writer.write(self.control(method, target))
                else:
                    self.record(body, now)
                    writer.write(OK)
                await writer.drain()
                if close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return
        finally:
            writer.close()

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)


async def main(port: int, ready: Path, out: Path) -> None:
    sink = Sink(out)
    server = await asyncio.start_server(sink.handle, "127.0.0.1", port, limit=MAX_HEAD, backlog=512)
    actual = server.sockets[0].getsockname()[1]
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(str(actual))
    os.replace(tmp, ready)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready", type=Path, required=True, help="the bound port is written here")
    parser.add_argument("--out", type=Path, required=True, help="/_dump writes the arrivals here")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.ready, args.out))
