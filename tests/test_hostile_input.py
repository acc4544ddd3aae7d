"""Hostile network text in the pure parts: capture's YAML, terminals, HTML bodies, HAR files, regexes.

Every value here came from a client or an upstream proxy in the security review
(issue 14, "The other hostile input found"); each test failed before its fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from mitm407.capture.infer import infer_scenario
from mitm407.capture.observe import make_observation
from mitm407.scenario.load import parse_scenario
from mitm407.wire.terminal import escape_controls

INJECTION = "rules: [{match: {}, auth: none}]"
# Every character YAML 1.1 reads as a line break, and what breaks a quoted or commented scalar.
BREAKS = ("\u2028", "\u2029", "\x85", "\r\n ", "\r", "\n")
TOP_KEYS = {"version", "name", "description", "realm", "login_hint", "users", "schemes", "basic", "default",
            "response", "digest", "rules", "faults"}


def hostile_observation(brk: str, realms: tuple[str, ...]) -> object:
    quoted = (realm.replace("\\", "\\\\").replace('"', '\\"') for realm in realms)
    headers = [("Proxy-Authenticate", f'Basic realm="{realm}"') for realm in quoted]
    headers += [("X-Evil", f'v{brk}{INJECTION} # "\'q'), ("Content-Type", "text/plain")]
    return make_observation(
        method="GET", url="http://example.com/", host="example.com", port=80, request_headers=[],
        status=407, reason=f"Denied{brk}{INJECTION} #'\"", response_headers=headers, body=b"no", closed=False,
    )


@pytest.mark.parametrize("brk", BREAKS, ids=lambda b: repr(b))
def test_captured_text_cannot_inject_yaml(brk):
    realm = f"corp{brk}{INJECTION}{brk}# \"x\" 'y'"
    text = infer_scenario([hostile_observation(brk, (realm, "second"))], source="http://up:3128",
                          captured_at="2026-01-02 03:04 UTC")
    doc = yaml.safe_load(text)
    assert "rules" not in doc and set(doc) <= TOP_KEYS
    assert doc["default"] == "required"
    scenario = parse_scenario(text, "<captured>", Path.cwd(), env={})
    assert scenario.rules.rules == ()
    for line in text.splitlines():  # comments hold no network text at all
        assert not line.startswith("#") or INJECTION not in line
    response = doc["response"]
    # the network text survives as data: exactly, or with CR/LF (which a replay cannot send) as spaces
    sendable = brk.replace("\r", " ").replace("\n", " ")
    assert response["reason"] == f"Denied{sendable}{INJECTION} #'\""
    assert {"X-Evil": f'v{sendable}{INJECTION} # "\'q'} in response["headers"]
    if "\r" not in brk and "\n" not in brk:  # a realm with CR/LF is not a valid quoted-string: verbatim
        assert doc["realm"] == realm


def test_a_line_break_in_any_comment_is_escaped():
    obs = hostile_observation("\u2028", ("a", "b"))
    text = infer_scenario([obs], source=f"http://up:3128/\u2028{INJECTION}", captured_at="now\x85x: 1")
    assert all(line.startswith("#") for line in text.split("\nversion:")[0].splitlines())
    assert "\\u2028" in text and "\\x85" in text
    assert "rules" not in yaml.safe_load(text)


def test_escape_controls():
    assert escape_controls("plain text") == "plain text"
    assert escape_controls("a\x1b[2Jb\rc\u2028d\x85\u202e\udcff\t") == "a\\x1b[2Jb\\rc\\u2028d\\x85\\u202e\\udcff\\t"
    assert escape_controls("abcdef", 3) == "abc..."


# -- HTML bodies reflect the request ---------------------------------------------------------------

SCRIPT_PATH = "/<script>alert(1)</script>?q=<b>"


def shaped(headers_yaml: str):
    from mitm407.core.facts import RequestFacts
    from mitm407.core.results import AuthResult, Result
    from mitm407.core.shape import build_shaped_answer

    text = (
        "version: 1\nusers: {u: p}\nschemes: [basic]\nresponse:\n  status: 407\n"
        f"  headers: {headers_yaml}\n  body: '<p>{{url}} {{host}} {{method}} {{reason}}</p>'\n"
    )
    scenario = parse_scenario(text, "s.yaml", Path("."))
    facts = RequestFacts("GET", "http://e.test" + SCRIPT_PATH, "e.test", 80, SCRIPT_PATH, "127.0.0.1", "c1")
    auth = AuthResult(Result.BAD_CREDENTIALS, "wrong password for user '<img src=x>'", "basic", "<img src=x>")
    return build_shaped_answer(scenario.response, auth, facts, lambda n: [], lambda: [], "hop", now=0.0)


@pytest.mark.parametrize("headers", ["[{Content-Type: text/html;charset=utf-8}]", "[{Server: x}]",
                                     "[{Content-Type: application/xhtml+xml}]"])
def test_html_bodies_escape_every_request_value(headers):
    body = shaped(headers).body
    assert "<script>" not in body and "<img" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;img src=x&gt;" in body


def test_plain_text_bodies_keep_the_url_as_sent():
    assert "/<script>alert(1)</script>" in shaped("[{Content-Type: text/plain}]").body


# -- reports: one upstream, one name; no terminal escapes ----------------------------------------------

CORE = "127.0.0.1:20086"


def hop_record(**kw) -> dict:
    base = {"hop": "edge", "status": 407, "upstream_proxy": CORE, "via": [], "proxy_status": [], "auth": None,
            "answered_by": {"kind": "upstream-proxy", "hop": CORE}, "method": "GET", "host": "o", "port": 80}
    return {**base, **kw}


NAMED = hop_record(answered_by={"kind": "upstream-proxy", "hop": "core"},
                   via=[{"protocol": "1.1", "received_by": "core"}, {"protocol": "1.1", "received_by": "edge"}])
UNNAMED = hop_record(status=502, upstream_status=407)  # mitmproxy's 502 for a refused CONNECT: no Via


@pytest.mark.parametrize("order", [(UNNAMED, NAMED), (NAMED, UNNAMED)], ids=["address-first", "name-first"])
def test_one_upstream_is_one_row_named_by_its_via(order):
    from mitm407.hoplog.summary import format_text, parse_lines, summarize_records

    data = summarize_records(parse_lines([json.dumps(r) for r in order])).as_dict()
    assert data["answered_by"] == [{"kind": "upstream-proxy", "hop": "core", "address": CORE, "flows": 2}]
    assert "upstream-proxy core (127.0.0.1:20086)" in format_text(data)


def test_a_farther_proxy_keeps_its_own_row():
    from mitm407.hoplog.summary import parse_lines, summarize_records

    far = hop_record(answered_by={"kind": "upstream-proxy", "hop": "far"},
                     proxy_status=[{"hop": "far", "params": {"error": "http_request_denied"}},
                                   {"hop": "core", "params": {}}])
    rows = summarize_records(parse_lines([json.dumps(far), json.dumps(UNNAMED)])).as_dict()["answered_by"]
    assert rows == [{"kind": "upstream-proxy", "hop": "core", "address": CORE, "flows": 1},
                    {"kind": "upstream-proxy", "hop": "far", "flows": 1}]


def test_html_report_draws_the_named_lane_for_an_address_only_record():
    from mitm407.hoplog.html import render_lines

    page = render_lines([json.dumps(UNNAMED), json.dumps(NAMED)])
    lanes = re.findall(r'data-lane="([^"]*)" data-lane-kind="upstream"', page)
    assert lanes == ["core", "core"]
    assert "upstream 127.0.0.1:20086" in page


def test_summary_text_escapes_control_characters():
    from mitm407.hoplog.summary import format_markdown, format_text, parse_lines, summarize_records

    evil = hop_record(answered_by={"kind": "upstream-proxy", "hop": "\x1b]0;pwned\x07\x1b[2J\r\u2028ok"},
                      upstream_proxy=None, error={"type": "x\x1b[31m"}, findings=[{"kind": "k\x9b1m"}])
    data = summarize_records(parse_lines([json.dumps(evil)])).as_dict()
    for text in (format_text(data), format_markdown(data)):
        assert not any(ch in text for ch in "\x1b\x07\r\u2028\x9b")
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\r\\u2028ok" in text


# -- rule regexes run on attacker paths -------------------------------------------------------------


def test_path_regex_is_matched_by_the_linear_engine():
    from mitm407.core.rules import compile_path_regex

    regex = compile_path_regex("^/(a+)+$")
    assert type(regex.compiled).__module__.startswith("re2")  # RE2, not Python's backtracking re
    assert not regex.search("/" + "a" * 27 + "!")
    assert not regex.search("/" + "a" * 100_000 + "!")  # Python's re would not return in our lifetime
    assert regex.search("/aaa")
    assert compile_path_regex(r"\.(exe|msi)$").search("/x/setup.exe")
    assert not compile_path_regex("^/ü").search("/\udcff")  # undecodable bytes of a request line: no raise


RULE = "version: 1\nusers: {u: p}\nschemes: [basic]\nrules:\n  - match: {path_regex: '%s'}\n    auth: none\n"


@pytest.mark.parametrize(("pattern", "why"), [
    (r"^/(a)\1$", "invalid escape sequence: \\1"),
    ("^/(?=a)", "invalid perl operator: (?="),
    ("^/(?<!a)b", "invalid perl operator: (?<!"),
    ("^/(?>a+)b", "invalid perl operator: (?>"),
])
def test_patterns_re2_cannot_run_are_refused_at_load(pattern, why):
    from mitm407.core.problems import ScenarioError

    with pytest.raises(ScenarioError) as e:
        parse_scenario(RULE % pattern, "s.yaml", Path("."))
    text = str(e.value)
    assert f"s.yaml:5:25: path_regex uses what RE2 cannot run: {why}" in text
    assert "backreferences, lookaround" in text


def test_a_missing_re2_is_a_located_error_naming_the_package(monkeypatch):
    import sys

    from mitm407.core.problems import ScenarioError

    monkeypatch.setitem(sys.modules, "re2", None)  # import re2 -> ImportError
    with pytest.raises(ScenarioError) as e:
        parse_scenario(RULE % "^/x", "s.yaml", Path("."))
    assert "s.yaml:5:25: path_regex needs the package 'google-re2', which is not installed" in str(e.value)
    assert "pip install google-re2" in str(e.value)


# -- endless request heads ----------------------------------------------------------------------------


def test_head_limit_counts_only_unfinished_heads():
    from mitm407.proxy.limits import head_is_too_long

    assert head_is_too_long(b"GET / HTTP/1.1\r\nX: " + b"a" * 100, 64)
    assert not head_is_too_long(b"GET / HTTP/1.1\r\n\r\n" + b"body" * 100, 64)  # a body after a short head
    assert not head_is_too_long(b"GET / HTTP/1.1\n\n" + b"b" * 100, 64)  # bare LF, as h11 accepts
    assert not head_is_too_long(b"x" * 100, 0)  # 0: no limit


def test_the_one_private_mitmproxy_api_the_head_limit_uses_is_there():
    """Contract test: fails loudly when a mitmproxy release moves Http1Server.read_headers and friends."""
    from mitm407.proxy.limits import install_head_limit
    from mitm407.proxy.mitmproxy_compat import http1_server_layer

    assert install_head_limit()
    assert install_head_limit()  # idempotent: wrapped once
    server, make_error_response = http1_server_layer()
    assert getattr(server.read_headers, "__mitm407_head_limit__", False)
    assert callable(make_error_response) and hasattr(server, "done")


def test_every_string_of_a_hop_record_is_html_escaped():
    """Each string field of a record (nested ones too) set to markup: none of it survives as markup."""
    from mitm407.hoplog.html import render_report

    evil = '<i>"\'&'
    record = {
        "hop": evil, "time": evil, "flow_id": evil, "client": {"address": evil}, "tunnel_id": evil,
        "method": evil, "scheme": evil, "host": evil, "port": evil, "path": evil, "status": 407,
        "answered_by": {"kind": "upstream-proxy", "hop": evil}, "upstream_proxy": evil, "upstream_status": 407,
        "error": {"type": evil, "next_hop": evil, "message": evil},
        "auth": {"scheme": evil, "user": evil, "result": evil, "reason": evil}, "rule": evil,
        "via": [{"protocol": evil, "received_by": evil, "comment": evil}],
        "proxy_status": [{"hop": evil, "params": {evil: evil}}],
        "timings": {"total_ms": evil}, "findings": [{"kind": evil, "header": evil, "scheme": evil, "user": evil}],
        "faults": [{"name": evil, "reason": evil}],
    }
    page = render_report([record, {**record, "answered_by": {"kind": "this-proxy", "hop": evil}}])
    assert "<i>" not in page and "\"'&" not in page
    assert "&lt;i&gt;" in page
