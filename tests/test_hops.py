"""Unit tests of the pure hop functions: Via, Proxy-Status, error types, attribution, summary."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mitm407.hoplog.attribution import (
    HopFacts,
    Kind,
    ProxyStatusEntry,
    ViaEntry,
    attribute_hop,
    build_proxy_status,
    build_via,
    classify_error,
    describe_credentials,
    parse_connect_refusal,
    parse_proxy_status,
    parse_via,
    redact_query,
)
from mitm407.hoplog.summary import format_markdown, format_text, parse_lines, summarize_records


def test_via_rfc9110_example():
    # RFC 9110 §7.6.3: "Via: 1.0 fred, 1.1 p.example.net"
    assert parse_via(["1.0 fred, 1.1 p.example.net"]) == [ViaEntry("1.0", "fred"), ViaEntry("1.1", "p.example.net")]


def test_via_comments_protocol_names_and_several_lines():
    values = ["1.1 squid-test (squid/5.7)", "HTTP/1.0 edge:8080 (a, (nested) b), 1.1 core"]
    assert parse_via(values) == [
        ViaEntry("1.1", "squid-test", "squid/5.7"),
        ViaEntry("HTTP/1.0", "edge:8080", "a, (nested) b"),
        ViaEntry("1.1", "core"),
    ]


@pytest.mark.parametrize("junk", ["", ",,,", "1.1", "(only comment)", "\x00\x01 x", "1.1 a (unterminated"])
def test_via_junk_is_skipped_not_raised(junk):
    entries = parse_via([junk, "1.1 good"])
    assert entries[-1] == ViaEntry("1.1", "good")


def test_build_via_makes_a_token():
    assert build_via("edge") == "1.1 edge"
    assert build_via("my proxy,1") == "1.1 my-proxy-1"
    assert parse_via([build_via("my proxy")]) == [ViaEntry("1.1", "my-proxy")]


def test_proxy_status_members_and_params():
    value = 'core; error=http_request_denied; details="no \\"x\\" header", "my cdn"; received-status=503; ok=?1; w=0.5'
    assert parse_proxy_status([value, "edge"]) == [
        ProxyStatusEntry("core", (("error", "http_request_denied"), ("details", 'no "x" header'))),
        ProxyStatusEntry("my cdn", (("received-status", 503), ("ok", True), ("w", 0.5))),
        ProxyStatusEntry("edge"),
    ]


@pytest.mark.parametrize(
    "junk",
    ["", ";;;", "(inner list) , 7", "a;=x", "?2", ":abc", "a; error=", "\u00e9\u00e9", ",,"],
)
def test_proxy_status_junk_is_skipped_not_raised(junk):
    assert parse_proxy_status([f"{junk}, good; error=dns_error"])[-1] == ProxyStatusEntry(
        "good", (("error", "dns_error"),)
    )


def test_proxy_status_unterminated_string_swallows_the_rest():
    assert parse_proxy_status(['"unterminated, good']) == []


@given(st.text(max_size=80))
def test_parsers_never_raise(text):
    parse_via([text])
    parse_proxy_status([text])
    classify_error(text)
    redact_query(text)
    describe_credentials(text)


def test_build_proxy_status_round_trips():
    built = build_proxy_status("edge", "connection_refused", 'refused "now"\n', "127.0.0.1:3128")
    assert built == 'edge; error=connection_refused; next-hop="127.0.0.1:3128"; details="refused \\"now\\"?"'
    entry = parse_proxy_status([built])[0]
    assert entry.hop == "edge" and entry.error == "connection_refused"
    assert entry.param("next-hop") == "127.0.0.1:3128" and entry.param("details") == 'refused "now"?'
    assert build_proxy_status("my hop") == '"my hop"'


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("[Errno 111] Connect call failed ('127.0.0.1', 9)", "connection_refused"),
        ("Connection refused", "connection_refused"),
        ("[Errno -2] Name or service not known", "dns_error"),
        ("TLS handshake failed: certificate verify failed", "tls_certificate_error"),
        ("OpenSSL Error([('SSL routines', '', 'wrong version number')])", "tls_protocol_error"),
        ("TimeoutError: timed out", "connection_timeout"),
        ("Connection reset by peer", "connection_terminated"),
        ("something else", "proxy_internal_error"),
    ],
)
def test_classify_error(message, expected):
    assert classify_error(message) == expected


def test_connect_refusal_message_from_mitmproxy():
    message = "Upstream proxy 127.0.0.1:3128 refused HTTP CONNECT request: 407 Proxy Authentication Required"
    assert parse_connect_refusal(message) == ("127.0.0.1:3128", 407)
    assert parse_connect_refusal("Connection refused") is None


def test_redact_query_and_credentials():
    assert redact_query("/p?token=abc&flag&empty=&x=1") == "/p?token=REDACTED&flag&empty=&x=REDACTED"
    assert redact_query("/p?token=abc", keep_values=True) == "/p?token=abc"
    assert redact_query("/plain") == "/plain"
    assert describe_credentials("Basic YWxpY2U6c2VjcmV0") == ("basic", "alice")
    assert describe_credentials("Bearer abc.def") == ("bearer", None)
    assert describe_credentials("Basic !!!") == ("basic", None)


def facts(**kw) -> HopFacts:
    base = {"hop_name": "edge", "answered_here": False, "status": 200, "origin": "example.com:80"}
    return HopFacts(**{**base, **kw})


def test_attribution_this_proxy():
    a = attribute_hop(facts(answered_here=True, status=407, answer_reason="no Proxy-Authorization header"))
    assert (a.kind, a.hop, a.error_type, a.details) == (
        Kind.THIS_PROXY, "edge", "http_request_denied", "no Proxy-Authorization header",
    )
    assert attribute_hop(facts(answered_here=True, status=200)).error_type is None
    assert attribute_hop(facts(answered_here=True, status=503)).error_type == "proxy_configuration_error"


def test_attribution_upstream_407_named_by_proxy_status_then_via_then_address():
    upstream = "127.0.0.1:3128"
    ps = (ProxyStatusEntry("core", (("error", "http_request_denied"),)),)
    assert attribute_hop(facts(status=407, upstream=upstream, proxy_status=ps)).hop == "core"
    via = (ViaEntry("1.1", "squid-test", "squid/5.7"),)
    a = attribute_hop(facts(status=407, upstream=upstream, via=via))
    assert (a.kind, a.hop) == (Kind.UPSTREAM_PROXY, "squid-test")
    assert attribute_hop(facts(status=407, upstream=upstream)).hop == upstream
    # through the upstream's CONNECT tunnel only the origin can answer
    assert attribute_hop(facts(status=407, upstream=upstream, via=via, upstream_tunnel=True)).kind is Kind.ORIGIN


def test_attribution_hidden_connect_refusal_connection_errors_and_origin():
    error = "Upstream proxy 127.0.0.1:3128 refused HTTP CONNECT request: 407 Proxy Authentication Required"
    a = attribute_hop(facts(status=None, upstream="127.0.0.1:3128", error=error))
    assert (a.kind, a.hop, a.upstream_status) == (Kind.UPSTREAM_PROXY, "127.0.0.1:3128", 407)
    a = attribute_hop(facts(status=None, upstream="127.0.0.1:9", error="[Errno 111] Connect call failed"))
    assert (a.kind, a.hop, a.error_type, a.next_hop) == (Kind.THIS_PROXY, "edge", "connection_refused", "127.0.0.1:9")
    assert attribute_hop(facts(status=None, error="Client disconnected.")).kind is Kind.NONE
    assert attribute_hop(facts(status=None)).kind is Kind.NONE
    page = facts(status=502, upstream="127.0.0.1:8081", server="mitmproxy 11.0.2", body_hint="Connection refused")
    a = attribute_hop(page)
    assert (a.kind, a.hop, a.error_type) == (Kind.UPSTREAM_PROXY, "127.0.0.1:8081", "connection_refused")
    a = attribute_hop(facts(status=502, server="nginx"))
    assert (a.kind, a.hop) == (Kind.ORIGIN, "example.com:80")
    # no upstream proxy configured: a 407 came from the origin (or a transparent hop we cannot see)
    assert attribute_hop(facts(status=407)).kind is Kind.ORIGIN


def test_summary_formats():
    lines = [
        json.dumps({"answered_by": {"kind": "this-proxy", "hop": "edge"}, "status": 407, "auth": {"result": "missing"},
                    "error": {"type": "http_request_denied"}, "findings": []}),
        json.dumps({"answered_by": {"kind": "origin", "hop": "o:80"}, "status": 200, "auth": None,
                    "error": None, "findings": [{"kind": "proxy-authorization-in-tunnel"}]}),
        "not json",
        "",
    ]
    data = summarize_records(parse_lines(lines)).as_dict()
    assert data == {
        "flows": 2,
        "bad_lines": 1,
        "answered_by": [
            {"kind": "origin", "hop": "o:80", "flows": 1},
            {"kind": "this-proxy", "hop": "edge", "flows": 1},
        ],
        "status": {"200": 1, "407": 1},
        "auth": {"missing": 1, "not-checked": 1},
        "errors": {"http_request_denied": 1},
        "findings": {"proxy-authorization-in-tunnel": 1},
    }
    text = format_text(data)
    assert text.startswith("hop log: 2 flows, 1 unreadable lines\n") and "this-proxy edge" in text
    assert "| proxy-authorization-in-tunnel | 1 |" in format_markdown(data)
