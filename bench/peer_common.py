"""What bench/huey_peer.py and bench/bare_peer.py share: the request check and the waitress server.

Both serve POST /api/v1/messages on 127.0.0.1 and write the bound port to a ready file.
"""

from __future__ import annotations

import os
from pathlib import Path

import falcon
from waitress.server import create_server


def message_fields(req: falcon.Request) -> dict:
    doc = req.get_media()
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("title", ""), str)
        or not isinstance(doc.get("body"), str)
    ):
        raise falcon.HTTPUnprocessableEntity(description="title and body must be strings")
    return doc


def serve(resource: object, threads: int, ready: Path) -> None:
    app = falcon.App()
    app.add_route("/api/v1/messages", resource)
    server = create_server(
        app, host="127.0.0.1", port=0, threads=threads, connection_limit=512, backlog=1024
    )
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(str(server.effective_port))
    os.replace(tmp, ready)
    server.run()
