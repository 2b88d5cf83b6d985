"""The web UI is served, and every API path it calls exists in the OpenAPI document."""

from __future__ import annotations

import re

import requests
from support.server import REPO


def test_the_ui_is_served_with_security_headers_and_only_calls_documented_endpoints(private_server):
    page = requests.get(private_server.url + "/", timeout=10)
    assert page.status_code == 200 and "MessagePusher" in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    script = requests.get(private_server.url + "/ui/app.js", timeout=10)
    assert script.status_code == 200 and script.headers["Content-Type"].startswith(
        "text/javascript"
    )
    assert requests.get(private_server.url + "/ui/../main.py", timeout=10).status_code == 404
    paths = requests.get(private_server.url + "/openapi.json", timeout=10).json()["paths"]
    templates = [re.compile("^" + re.sub(r"{\w+}", r"[^/]+", p) + "$") for p in paths]
    source = (REPO / "http" / "ui" / "app.js").read_text()
    called = {
        re.sub(r"\$\{[^}]+\}", "", re.sub(r"/\$\{[^}]+\}", "/1", m)).split("?")[0]
        for m in re.findall(r"[`\"](/(?:api/v1|openapi)[^`\"]*)[`\"]", source)
    }
    assert called, "no API calls found in app.js"
    missing = sorted(c for c in called if not any(t.match(c) for t in templates))
    assert not missing, f"the UI calls endpoints the API does not have: {missing}"
