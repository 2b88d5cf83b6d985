"""/docs: a readable page of /openapi.json, served without credentials and without any CDN."""

from __future__ import annotations

import html
import re

import requests


def test_the_docs_page_lists_every_operation_of_the_openapi_document_with_its_permission(
    server_factory,
):
    server = server_factory()
    page = requests.get(server.url + "/docs", timeout=30)
    assert page.status_code == 200, page.text
    assert page.headers["Content-Type"].startswith("text/html")
    doc = requests.get(server.url + "/openapi.json", timeout=30).json()
    rows = {
        (method, html.unescape(path), html.unescape(summary), permission)
        for method, path, summary, permission in re.findall(
            r"<tr><td><code>(\w+)</code></td><td><code>(.*?)</code></td><td>(.*?)</td>"
            r"<td><code>(.*?)</code></td>",
            page.text,
        )
    }
    expected = {
        (method.upper(), path, op["summary"], op["x-permission"])
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }
    assert rows == expected, (expected - rows, rows - expected)
    with_body = sum("requestBody" in op for item in doc["paths"].values() for op in item.values())
    assert page.text.count("<summary>body</summary>") == with_body > 0
    assert '"title": "MessageIn"' in html.unescape(page.text)
    assert not re.search(r"<(script|link)\b[^>]*(src|href)=", page.text), "no outside resources"
