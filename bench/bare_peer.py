"""The HTTP stack's ceiling for bench/load.py: a bare Falcon+waitress POST doing one SQLite insert.

WAL, synchronous=NORMAL, one connection per waitress thread; answers 202 {"id"} like the real endpoint.
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
import time
from pathlib import Path

import falcon
from peer_common import message_fields, serve


class BareMessages:
    """One SQLite insert per POST (WAL, synchronous=NORMAL, a connection per thread)."""

    def __init__(self, path: Path):
        self.path = path
        self.local = threading.local()
        with sqlite3.connect(path) as conn:
            conn.execute("pragma journal_mode=wal")
            conn.execute(
                "create table if not exists message (id integer primary key, title text, "
                "body text, created_at real)"
            )

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute("pragma synchronous=normal")
        return conn

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        doc = message_fields(req)
        cur = self._conn().execute(
            "insert into message (title, body, created_at) values (?, ?, ?)",
            (doc.get("title", ""), doc["body"], time.time()),
        )
        resp.status = falcon.HTTP_202
        resp.media = {"id": cur.lastrowid, "status": "accepted"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=16, help="waitress threads")
    parser.add_argument("--ready", type=Path, required=True, help="the bound port is written here")
    parser.add_argument("--db", type=Path, required=True, help="the SQLite file")
    args = parser.parse_args()
    serve(BareMessages(args.db), args.threads, args.ready)
