"""headerfields: one-pass reads and edits of raw header fields agree with mitmproxy's own Headers methods."""

from __future__ import annotations

import datetime
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import http

from mitm407.hoplog import headerfields
from mitm407.hoplog.addon import json_line
from mitm407.hoplog.recordparts import iso_time as _iso

NAMES = st.sampled_from([b"Proxy-Authorization", b"proxy-authorization", b"PROXY-AUTHORIZATION", b"Via", b"Host", b"X"])
FIELDS = st.lists(st.tuples(NAMES, st.binary(max_size=20)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(fields=FIELDS, name=st.sampled_from([b"proxy-authorization", b"via", b"absent"]))
def test_reads_and_removals_match_headers(fields, name):
    headers = http.Headers(fields)
    assert headerfields.values(headers, name) == headers.get_all(name)
    assert headerfields.has(headers, name) == (name in headers)
    assert headerfields.values_of(headers, (b"host", name)) == [headers.get_all(b"host"), headers.get_all(name)]
    expected = http.Headers(fields)
    if name in expected:
        del expected[name]
    before = headers.fields
    headerfields.remove(headers, name)
    assert headers.fields == expected.fields
    if name not in http.Headers(fields):
        assert headers.fields is before  # nothing to remove: the tuple is not rebuilt


@settings(max_examples=200, deadline=None)
@given(fields=FIELDS, value=st.text(max_size=20))
def test_append_matches_add(fields, value):
    headers, expected = http.Headers(fields), http.Headers(fields)
    headerfields.append(headers, (b"Via", value.encode("utf-8", "surrogateescape")))
    expected.add("Via", value)
    assert headers.fields == expected.fields
    assert headers.get_all("via")[-1] == value


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.floats(min_value=0, max_value=4e9), st.integers(0, 4_000_000_000_000).map(lambda n: n / 1000)))
def test_iso_matches_datetime(timestamp):
    """The hop log's per-second cached timestamp prints what datetime.isoformat would."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    assert _iso(timestamp) == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.text(max_size=10) | st.integers() | st.none(), max_size=5))
def test_json_line_is_utf8_json(record):
    """Lone surrogates (non-UTF-8 bytes mitmproxy decoded) come out escaped: every line is valid UTF-8 JSON."""
    line = json_line(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line.decode("utf-8")) == record
