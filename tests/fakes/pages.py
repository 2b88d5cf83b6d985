"""A page server: a real HTTP server on 127.0.0.1 serving fixed HTML articles to fetch."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARTICLE = """<!doctype html><html><head><meta charset="utf-8"><title>Quarterly Storage Report</title></head>
<body><nav>Home | About</nav><article><h1>Quarterly Storage Report</h1>
<p>The storage cluster grew by forty percent this quarter, driven by video archives from the media team.</p>
<p>Disk failures fell to three per month after the firmware update rolled out in July.</p>
<p>The team recommends buying two more storage nodes before the holiday peak to keep headroom above thirty percent.</p>
<p>Backups now finish within four hours every night, down from seven hours last quarter.</p>
<p>Costs per terabyte dropped eleven percent thanks to the new volume discount.</p>
</article><footer>Copyright</footer></body></html>"""


class PageServer:
    def __init__(self, pages: dict[str, str] | None = None):
        self.pages = {"/article": ARTICLE, **(pages or {})}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                page = server.pages.get(self.path)
                body = (page or "not found").encode()
                self.send_response(200 if page else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
