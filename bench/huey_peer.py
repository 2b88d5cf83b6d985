"""The peer a user would build instead of MessagePusher, for bench/load.py: Falcon+waitress enqueueing into Huey.

`web` serves POST /api/v1/messages (202 after the enqueue); `consumer` runs Huey thread workers POSTing to the sink.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from pathlib import Path

import falcon
import requests
from huey import SqliteHuey
from huey.storage import SqliteStorage
from peer_common import message_fields, serve


class NormalSyncStorage(SqliteStorage):
    """SqliteStorage at synchronous=NORMAL, MessagePusher's durability (Huey's default is FULL)."""

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute("pragma synchronous=normal")
        return conn


# The task module is imported by both the web process and the consumer, like a user's tasks.py.
# The environment is set by bench/load.py; there is deliberately no default file.
huey = SqliteHuey(
    "bench",
    filename=os.environ["BENCH_HUEY_DB"],
    **(
        {"storage_class": NormalSyncStorage}
        if os.environ.get("BENCH_HUEY_SYNCHRONOUS") == "normal"
        else {}
    ),
)
SINK_URL = os.environ["BENCH_SINK_URL"]
_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


@huey.task(retries=4, retry_delay=2)
def deliver(message: dict) -> None:
    """POST the message to the webhook; an error makes Huey retry it."""
    _session().post(SINK_URL, json=message, timeout=15).raise_for_status()


class HueyMessages:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        doc = message_fields(req)
        message_id = uuid.uuid4().hex
        deliver(
            {
                "id": message_id,
                "title": doc.get("title", ""),
                "body": doc["body"],
                "channels": doc.get("channels", []),
                "created_at": time.time(),
            }
        )
        resp.status = falcon.HTTP_202
        resp.media = {"id": message_id, "status": "queued"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["web", "consumer"])
    parser.add_argument("--threads", type=int, default=16, help="web: waitress threads")
    parser.add_argument("--workers", type=int, default=8, help="consumer: Huey worker threads")
    parser.add_argument(
        "--delay", type=float, default=0.1, help="consumer: initial polling delay, s"
    )
    parser.add_argument("--ready", type=Path, help="web: the bound port is written here")
    args = parser.parse_args()
    if args.role == "consumer":
        huey.create_consumer(
            workers=args.workers, worker_type="thread", initial_delay=args.delay
        ).run()
    else:
        serve(HueyMessages(), args.threads, args.ready)
