"""The public message page /m/{token} and the "详情 / details" link of short-text channels.

The page renders the whole message with markdown sanitised (a script in the body never runs), is
reached only by the message's unguessable token, follows the owner's switch, and goes with the
message at retention. The link is checked as the running server sends it to the local fake WeCom.
"""

from __future__ import annotations

import json
import re

import requests
from fakes.channel_services import WeComFake
from support.ops import run_job, until

from messagepusher.actors.channels.base import OutboundMessage
from messagepusher.actors.channels.details_link import (
    LABEL,
    fit_with_link,
    page_url,
    with_link,
)
from messagepusher.actors.channels.http_common import utf8_len
from messagepusher.actors.channels.wecom import TEXT_LIMIT_BYTES, WeComConfig, build_call
from messagepusher.http.resources.public import body_html, page
from messagepusher.messages.store import new_public_token

PUBLIC_URL = "https://push.example.test/"
LINK = re.compile(r"详情 / details\]?[:(] ?https://push\.example\.test/m/([A-Za-z0-9_-]+)")
ATTACK = (
    "**bold** and <script>alert('owned')</script>\n\n"
    "<img src=x onerror=\"alert('img')\"> [click](javascript:alert('link'))\n\n"
    '<a href="https://example.com/ok" onclick="alert(1)">fine link</a>'
)


def message(**kw) -> OutboundMessage:
    return OutboundMessage(**{"id": 7, "title": "Disk full", "body": "db1 at 97%", **kw})


# --- the link, pure ---------------------------------------------------------------------------


def test_the_page_url_needs_a_public_url_a_token_and_the_owners_consent():
    assert page_url(PUBLIC_URL, "tok", {}) == "https://push.example.test/m/tok"
    assert page_url(PUBLIC_URL, "tok", {"public_page": True}) == "https://push.example.test/m/tok"
    assert page_url("", "tok", {}) is None
    assert page_url(PUBLIC_URL, None, {}) is None
    assert page_url(PUBLIC_URL, "tok", {"public_page": False}) is None


def test_tokens_are_long_random_and_never_the_same():
    tokens = {new_public_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", t) for t in tokens)


def test_the_link_ends_the_text_and_survives_truncation_within_the_limit():
    linked = message(details_url="https://push.example.test/m/abc", body="x" * 5000)
    text, cut = fit_with_link("y" * 5000, linked, 2048, utf8_len)
    assert cut and utf8_len(text) <= 2048
    assert text.endswith(f"\n\n{LABEL}: https://push.example.test/m/abc")
    assert with_link("hi", linked, markdown=True) == (
        f"hi\n\n[{LABEL}](https://push.example.test/m/abc)"
    )
    plain = message()
    assert fit_with_link("short", plain, 2048, utf8_len) == ("short", False)
    assert with_link("short", plain) == "short"


def test_a_wecom_text_carries_the_link_only_when_the_message_has_a_page():
    config = WeComConfig(key="k")
    call, _ = build_call(message(details_url="https://p.test/m/t1", body="é" * 3000), config)
    content = call.body.decode()
    assert "详情 / details: https://p.test/m/t1" in content
    assert utf8_len(json.loads(content)["text"]["content"]) <= TEXT_LIMIT_BYTES
    call, _ = build_call(message(), config)
    assert "details" not in call.body.decode()


# --- the page, pure ---------------------------------------------------------------------------


def test_markdown_is_rendered_and_scripts_handlers_and_javascript_links_are_removed():
    rendered = body_html(ATTACK, "markdown")
    assert "<strong>bold</strong>" in rendered
    assert "fine link" in rendered and 'href="https://example.com/ok"' in rendered
    lowered = rendered.lower()
    for forbidden in ("<script", "onerror", "onclick", "javascript:", "alert('owned')"):
        assert forbidden not in lowered, (forbidden, rendered)


def test_html_bodies_are_sanitised_and_text_bodies_escaped():
    assert "<script" not in body_html("<p>hi</p><script>alert(1)</script>", "html").lower()
    escaped = body_html("<script>alert(1)</script>\nline two", "text")
    assert escaped == "<p>&lt;script&gt;alert(1)&lt;/script&gt;<br>line two</p>"


def test_the_page_shows_title_time_in_the_owners_zone_ai_result_body_and_link():
    html = page(
        {
            "id": 3,
            "title": "<b>Deploy</b>",
            "body": "done",
            "format": "text",
            "url": "https://example.com/run?a=1&b=2",
            "created_at": 1_700_000_000.0,
            "ai_result": {"status": "ok", "task": "summarize", "result": "all good"},
            "fetched": {"title": "Run 42"},
        },
        "Asia/Shanghai",
    )
    assert "<h1>&lt;b&gt;Deploy&lt;/b&gt;</h1>" in html
    assert "2023-11-15 06:13 (Asia/Shanghai)" in html
    assert "摘要/Summary" in html and "all good" in html
    assert 'href="https://example.com/run?a=1&amp;b=2"' in html and "Run 42" in html
    assert '<meta name="viewport"' in html


# --- through the server -----------------------------------------------------------------------


def test_a_wecom_text_links_to_the_page_which_renders_safely_and_follows_switch_and_retention(
    server_factory,
):
    server = server_factory(
        {
            "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
            "MP_SERVER__PUBLIC_URL": PUBLIC_URL,
            # a message older than about two seconds goes at the next retention purge
            "MP_RETENTION__MESSAGES_DAYS": "0.00002",
        }
    )
    admin = server.client(server.create_key())
    with WeComFake("wk-page-key") as wecom:
        made = admin.post(
            "/api/v1/channels",
            json={
                "name": "robot",
                "type": "wecom",
                "config": {"key": "wk-page-key", "base_url": wecom.url},
            },
        )
        assert made.status_code == 201, made.text
        long_tail = "the end of a long body"
        body = ATTACK + "\n\n" + "长" * 1000 + "\n\n" + long_tail
        sent = admin.post(
            "/api/v1/messages",
            json={"title": "Nightly report", "body": body, "channels": ["robot"]},
        )
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["id"]
        admin.wait_message(message_id, ("delivered",))
        assert wecom.problems == []
        data = wecom.requests[0].json()
        assert data["msgtype"] == "text"
        content = data["text"]["content"]
        assert long_tail not in content  # cut to WeCom's 2048 bytes, the link kept
        token = LINK.search(content).group(1)
        assert len(token) >= 32

        shown = requests.get(f"{server.url}/m/{token}", timeout=30)
        assert shown.status_code == 200, shown.text
        assert shown.headers["Content-Type"].startswith("text/html")
        csp = shown.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp
        assert shown.headers["Referrer-Policy"] == "no-referrer"
        assert "Nightly report" in shown.text and long_tail in shown.text
        assert "&lt;script&gt;" in shown.text and "<script" not in shown.text.lower()  # text

        # a markdown message's page: rendered, and nothing in it can run
        marked = admin.post(
            "/api/v1/messages",
            json={"title": "md", "body": ATTACK, "format": "markdown", "channels": ["robot"]},
        )
        admin.wait_message(marked.json()["id"], ("delivered",))
        markdown_text = wecom.requests[-1].json()["markdown"]["content"]
        rendered = requests.get(f"{server.url}/m/{LINK.search(markdown_text).group(1)}", timeout=30)
        assert rendered.status_code == 200 and "<strong>bold</strong>" in rendered.text
        lowered = rendered.text.lower()
        for forbidden in ("<script", "onerror", "onclick", "javascript:"):
            assert forbidden not in lowered, forbidden

        for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), str(message_id), "x"):
            missing = requests.get(f"{server.url}/m/{wrong}", timeout=30)
            assert missing.status_code == 404 and "does not exist" in missing.text, wrong

        # the owner turns the page off: the page is gone and new texts carry no link
        off = admin.patch("/api/v1/me", json={"preferences": {"public_page": False}})
        assert off.status_code == 200 and off.json()["preferences"]["public_page"] is False
        assert requests.get(f"{server.url}/m/{token}", timeout=30).status_code == 404
        quiet = admin.post("/api/v1/messages", json={"title": "no link", "channels": ["robot"]})
        admin.wait_message(quiet.json()["id"], ("delivered",))
        assert "details" not in wecom.requests[-1].json()["text"]["content"]
        on = admin.patch("/api/v1/me", json={"preferences": {"public_page": True}})
        assert on.status_code == 200
        assert requests.get(f"{server.url}/m/{token}", timeout=30).status_code == 200

    # retention removes the message, and its page with it
    until(
        lambda: (
            run_job(admin, "retention_purge")
            and admin.get(f"/api/v1/messages/{message_id}").status_code == 404
        ),
        60,
        f"message {message_id} purged",
    )
    assert requests.get(f"{server.url}/m/{token}", timeout=30).status_code == 404
