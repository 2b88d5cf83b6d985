"""Properties of the one body reader and the one time parser, driven by hypothesis.

Whatever the bytes, the reader returns a value or raises APIError with a 4xx; the time parser
returns epoch seconds inside the window that always renders, or raises ValueError.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, seed, settings
from hypothesis import strategies as st

from messagepusher.http.errors import APIError
from messagepusher.http.params import MAX_ID, Param, ParamError
from messagepusher.http.resources.common import MAX_DEPTH, nesting_depth, parse_body
from messagepusher.supervisor.timefmt import (
    EARLIEST,
    LATEST,
    TimeOutOfRange,
    parse_rfc3339,
    to_rfc3339,
)

SETTINGS = settings(max_examples=300, deadline=None, database=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@seed(1)
@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_give_a_value_or_a_4xx(raw):
    try:
        parse_body(raw, "application/json")
    except APIError as exc:
        assert 400 <= exc.status_code < 500
        assert exc.code and exc.message


@seed(2)
@SETTINGS
@given(json_values)
def test_any_json_text_gives_a_value_or_a_4xx_naming_the_field(value):
    raw = json.dumps(value).encode()
    try:
        parsed = parse_body(raw, "application/json")
    except APIError as exc:
        assert exc.status_code in (400, 422), exc.message
        if exc.status_code == 422:
            assert exc.details[0]["field"] and exc.details[0]["field"] in exc.message
        return
    # What the reader lets through can be answered: it encodes as UTF-8 JSON.
    json.dumps(parsed, ensure_ascii=False, allow_nan=False).encode()


@seed(3)
@SETTINGS
@given(st.text(), st.sampled_from(["\x00", "\ud800", "\udfff", "\udc00"]), st.text())
def test_a_nul_or_lone_surrogate_is_a_422_naming_its_field(before, bad, after):
    raw = json.dumps({"outer": {"list": [1, before + bad + after]}}).encode()
    try:
        parse_body(raw, "application/json")
    except APIError as exc:
        assert exc.status_code == 422 and exc.details[0]["field"] == "outer.list[1]"
    else:
        raise AssertionError("accepted")


@seed(4)
@SETTINGS
@given(st.integers(min_value=1, max_value=300))
def test_nesting_up_to_the_limit_is_read_and_past_it_is_a_400_naming_the_limit(depth):
    assert nesting_depth(nested(depth)) == depth
    try:
        parse_body(nested(depth), "application/json")
    except APIError as exc:
        assert depth > MAX_DEPTH and exc.status_code == 400 and str(MAX_DEPTH) in exc.message
    else:
        assert depth <= MAX_DEPTH


@seed(5)
@SETTINGS
@given(st.integers())
def test_integers_beyond_64_bits_are_a_422(number):
    raw = f'{{"n": {number}}}'.encode()
    try:
        assert parse_body(raw, "application/json") == {"n": number}
        assert -(2**63) <= number < 2**63
    except APIError as exc:
        assert exc.status_code == 422 and not -(2**63) <= number < 2**63


@seed(6)
@SETTINGS
@given(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-12))])),
    st.sampled_from(["Z", "+14:00", "-12:00", "+05:30"]),
)
def test_every_parsed_time_lies_in_the_window_and_renders(moment, zone):
    text = moment.replace(tzinfo=None).isoformat() + zone
    try:
        ts = parse_rfc3339(text)
    except TimeOutOfRange:
        offset = 0 if zone == "Z" else int(zone[:3]) * 3600 + int(zone[0] + zone[4:]) * 60
        utc = moment.replace(tzinfo=None) - timedelta(seconds=offset)
        assert not datetime(1970, 1, 1) <= utc <= datetime(9999, 12, 31, 23, 59, 59)
        return
    assert EARLIEST <= ts <= LATEST
    assert to_rfc3339(ts).endswith("Z")


@seed(7)
@SETTINGS
@given(st.text(max_size=40))
def test_any_text_is_a_time_or_a_value_error(text):
    try:
        ts = parse_rfc3339(text)
    except ValueError:
        return
    assert EARLIEST <= ts <= LATEST


@seed(8)
@SETTINGS
@given(st.floats())
def test_any_stored_number_renders_without_raising(ts):
    rendered = to_rfc3339(ts)
    assert rendered is None if not math.isfinite(ts) else rendered.endswith("Z")


@seed(9)
@SETTINGS
@given(st.text(max_size=25))
def test_an_id_parameter_is_a_positive_64_bit_integer_or_refused(raw):
    try:
        value = Param("message_id", "integer").parse(raw)
    except ParamError:
        return
    assert raw.isascii() and 1 <= value <= MAX_ID
