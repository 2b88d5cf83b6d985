"""The shared pure helpers: answer classification, Retry-After, size limits, rendering, redaction."""

from __future__ import annotations

import email.utils

import pytest

from messagepusher.actors.channels.http_common import (
    Answer,
    classify_body_code,
    classify_status,
    html_to_text,
    message_title,
    parse_retry_after,
    redact,
    render,
    retry_after_from_json,
    split,
    truncate,
    utf8_len,
    utf16_len,
)

NOW = 1_760_000_000.0


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "sent"),
        (204, "sent"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (301, "permanent"),
        (400, "permanent"),
        (401, "permanent"),
        (404, "permanent"),
        (410, "permanent"),
    ],
)
def test_http_status_classes_are_sent_retry_or_permanent(status: int, expected: str) -> None:
    assert classify_status(Answer(status, "x"), NOW, "Svc").status == expected


def test_retry_after_header_in_seconds_is_honoured() -> None:
    result = classify_status(Answer(429, "", {"Retry-After": "17"}), NOW, "Svc")
    assert result.status == "retry"
    assert result.retry_after == 17.0


def test_retry_after_header_as_an_http_date_is_converted_to_seconds_from_now() -> None:
    date = email.utils.formatdate(NOW + 90, usegmt=True)
    result = classify_status(Answer(503, "busy", {"retry-after": date}), NOW, "Svc")
    assert result.retry_after == pytest.approx(90.0)


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("", None), ("soon", None), ("-5", 0.0)]
)
def test_a_missing_or_bad_retry_after_gives_no_delay_and_a_negative_one_gives_zero(
    value: str | None, expected: float | None
) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_is_read_from_a_nested_json_field() -> None:
    data = {"ok": False, "parameters": {"retry_after": 12}}
    assert retry_after_from_json(data, "parameters", "retry_after") == 12.0
    assert retry_after_from_json(data, "retry_after") is None
    assert retry_after_from_json("not json", "retry_after") is None


def test_a_redirect_is_permanent_and_names_the_fix() -> None:
    result = classify_status(
        Answer(302, "", {"Location": "https://elsewhere.example/"}), NOW, "Svc"
    )
    assert result.status == "permanent"
    assert "final address" in result.detail


def test_a_body_code_other_than_ok_on_http_200_is_a_permanent_failure() -> None:
    answer = Answer(200, '{"errcode": 93000, "errmsg": "invalid webhook url"}')
    result = classify_body_code(answer, NOW, "Svc", code_key="errcode", message_key="errmsg", ok=0)
    assert result.status == "permanent"
    assert "93000" in result.detail and "invalid webhook url" in result.detail


def test_a_json_answer_without_the_code_field_is_permanent_and_points_at_base_url() -> None:
    result = classify_body_code(
        Answer(200, "<html>portal</html>"), NOW, "Svc", code_key="code", message_key="msg", ok=0
    )
    assert result.status == "permanent"
    assert "base_url" in result.detail


def test_byte_truncation_never_cuts_a_chinese_character() -> None:
    text = "中文消息" * 1000  # 3 bytes a character
    for limit in (2048, 2047, 2046, 100):
        cut, was_cut = truncate(text, limit, utf8_len)
        assert was_cut
        assert utf8_len(cut) <= limit
        assert cut.endswith("…")
        cut.encode().decode("utf-8")  # whole characters only


def test_text_within_the_limit_is_unchanged() -> None:
    assert truncate("短消息", 2048, utf8_len) == ("短消息", False)


def test_split_prefers_line_breaks_and_keeps_every_part_within_the_limit() -> None:
    lines = [f"第{n}行 line {n}" for n in range(400)]
    parts = split("\n".join(lines), 500)
    assert len(parts) > 1
    assert all(len(part) <= 500 for part in parts)
    assert "\n".join(parts) == "\n".join(lines)


def test_split_by_utf16_units_counts_an_emoji_as_two() -> None:
    parts = split("😀" * 3000, 4096, utf16_len)
    assert [utf16_len(part) for part in parts] == [4096, 1904]


def test_render_puts_the_ai_summary_first_then_body_then_the_fetched_link(make_message) -> None:
    message = make_message(
        url="https://example.com/a",
        fetched={"title": "原文标题", "text": "..."},
        ai={"task": "summarize", "result": "磁盘快满了。"},
    )
    text = render(message, markdown=False)
    assert (
        text.index("磁盘告警")
        < text.index("摘要/Summary: 磁盘快满了。")
        < text.index("服务器 db-1")
    )
    assert text.endswith("原文标题\nhttps://example.com/a")
    assert "[原文标题](https://example.com/a)" in render(message, markdown=True)


def test_render_shows_a_classification_as_label_and_tags(make_message) -> None:
    message = make_message(
        ai={"task": "classify", "result": {"label": "alert", "tags": ["disk", "db"]}}
    )
    assert "分类/Classification: alert; tags: disk, db" in render(message, markdown=False)


def test_an_html_body_is_rendered_as_its_text(make_message) -> None:
    message = make_message(
        format="html", body="<p>Hello <b>world</b></p><script>x()</script><p>second</p>"
    )
    assert render(message, markdown=False, title=False) == "Hello world\n\nsecond"
    assert html_to_text("a<br>b") == "a\nb"


def test_message_title_falls_back_to_the_first_body_line(make_message) -> None:
    assert message_title(make_message(title="", body="\n  第一行\n第二行")) == "第一行"


def test_redact_masks_a_token_inside_a_url_path_of_an_error_text() -> None:
    error = "HTTPSConnectionPool(host='x', port=443): Max retries exceeded with url: /bot123456:SECRETTOKEN/sendMessage"
    redacted = redact(error, ["123456:SECRETTOKEN"])
    assert "SECRETTOKEN" not in redacted
    secret_url = "https://discord.com/api/webhooks/1/abcdefghij"
    assert "abcdefghij" not in redact("url: /api/webhooks/1/abcdefghij", [secret_url])
