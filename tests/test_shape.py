"""The scenario's ``response:`` section: validation with file:line:col, and the answers it builds."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mitm407.core.facts import RequestFacts
from mitm407.core.problems import ScenarioError
from mitm407.core.results import AuthResult, Result
from mitm407.core.shape import build_shaped_answer, fill, request_values
from mitm407.scenario.load import parse_scenario

HEAD = "version: 1\nusers: {u: p}\nschemes: [basic]\n"
PLAIN = RequestFacts("GET", "/x", "example.com", 8080, "/x?token=abc", "127.0.0.1", "c1")
CONNECT = RequestFacts("CONNECT", "example.com:443", "example.com", 443, "", "127.0.0.1", "c1", is_connect=True)
MISSING = AuthResult(Result.MISSING, "no Proxy-Authorization header")
WRONG = AuthResult(Result.BAD_CREDENTIALS, "wrong password for user 'u'", "basic", "u")
NOW = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT

SHAPE = HEAD + textwrap.dedent(
    """\
    response:
      status: 407
      reason: Login Needed
      challenges:
        - {value: 'Negotiate'}
        - basic
        - {value: 'X-Token realm="t", nonce="{nonce}"'}
      headers:
        - Server: gate/1
        - Date: "{date}"
        - Proxy-Authenticate: "{challenges}"
        - Content-Length: "{content_length}"
        - Connection: keep-alive
      body: "{method} {url} ({authority}, {host}) {status} {reason} by {hop}; css {color: red}"
      connect:
        body: "tunnel {url}"
        close: true
      bad_credentials:
        status: 403
        reason: Forbidden
        challenges: []
    """
)


def errors(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "s.yaml", Path("."))
    return [str(p) for p in e.value.problems]


def answer(facts: RequestFacts, auth: AuthResult, text: str = SHAPE):
    scenario = parse_scenario(text, "s.yaml", Path("."))
    assert scenario.response is not None
    return build_shaped_answer(
        scenario.response,
        auth,
        facts,
        lambda name: {"basic": ['Basic realm="mitm407"']}[name],
        lambda: ['Basic realm="mitm407"'],
        "hop1",
        now=NOW,
        nonce=lambda: "N0NCE",
    )


def test_plain_refusal_has_the_exact_shape():
    a = answer(PLAIN, MISSING)
    body = (
        "GET http://example.com:8080/x (example.com:8080, example.com) 407 no Proxy-Authorization header by hop1;"
        " css {color: red}"
    )
    assert (a.status, a.reason_phrase, a.body, a.close, a.complete) == (407, "Login Needed", body, False, True)
    assert a.headers == (
        ("Server", "gate/1"),
        ("Date", "Tue, 14 Nov 2023 22:13:20 GMT"),
        ("Proxy-Authenticate", "Negotiate"),
        ("Proxy-Authenticate", 'Basic realm="mitm407"'),
        ("Proxy-Authenticate", 'X-Token realm="t", nonce="N0NCE"'),
        ("Content-Length", str(len(body))),
        ("Connection", "keep-alive"),
    )


def test_connect_override_and_close():
    a = answer(CONNECT, MISSING)
    assert a.body == "tunnel example.com:443" and a.close
    assert a.headers[-1] == ("Connection", "close")
    assert [h for h in a.headers if h[0] == "Connection"] == [("Connection", "close")]  # replaced, not added


def test_bad_credentials_override_inherits_the_rest():
    a = answer(PLAIN, WRONG)
    assert (a.status, a.reason_phrase) == (403, "Forbidden")
    assert [k for k, _ in a.headers] == ["Server", "Date", "Content-Length", "Connection"]  # no challenges
    assert answer(CONNECT, WRONG).close  # CONNECT + wrong credentials: both overrides apply
    assert answer(PLAIN, AuthResult(Result.MALFORMED, "x")).status == 407  # malformed is not "wrong"


def test_handshake_continuation_sends_only_its_challenge():
    type2 = (("Proxy-Authenticate", "NTLM TlRMTVNTUAACAAAA"),)
    auth = AuthResult(Result.CONTINUE, "NTLM type 2 sent", "ntlm", headers=type2)
    a = answer(PLAIN, auth)
    assert [v for k, v in a.headers if k == "Proxy-Authenticate"] == ["NTLM TlRMTVNTUAACAAAA"]


def test_partial_shape_keeps_mitm407_headers_and_body():
    a = answer(PLAIN, MISSING, HEAD + "response:\n  reason: Who Are You\n  close: true\n")
    assert (a.status, a.reason_phrase, a.close, a.complete) == (407, "Who Are You", True, False)
    assert a.headers == (("Proxy-Authenticate", 'Basic realm="mitm407"'),)
    assert "refused this request: no Proxy-Authorization header" in a.body


def test_no_marker_puts_challenges_first():
    a = answer(PLAIN, MISSING, HEAD + "response:\n  headers:\n    - Server: s\n")
    assert a.headers == (("Proxy-Authenticate", 'Basic realm="mitm407"'), ("Server", "s"))


def test_fill_leaves_unknown_braces():
    assert fill("{url} {nope} {date", {"url": "U"}) == "U {nope} {date"
    assert request_values(CONNECT)["url"] == "example.com:443"
    ipv6 = RequestFacts("GET", "/", "::1", 80, "/", "::1", "c")
    assert request_values(ipv6)["url"] == "http://[::1]/"


@pytest.mark.parametrize(
    "section, expected",
    [
        ("response:\n  status: 700\n", "s.yaml:5:11: 'status' must be an HTTP status code (100-599), got 700"),
        ("response:\n  stauts: 407\n", "s.yaml:5:3: unknown key 'stauts' in 'response' (did you mean 'status'?)"),
        (
            "response:\n  challenges: [digest]\n",
            "s.yaml:5:16: challenge 'digest' is not a scheme listed in 'schemes' (basic) "
            "(add it to 'schemes', or write {value: '...'} to send a challenge verbatim)",
        ),
        (
            "response:\n  headers:\n    - Date: {date}\n",
            "s.yaml:6:13: the value of header 'Date' must be a string "
            '(quote values that start with "{", e.g. Date: "{date}")',
        ),
        ("response:\n  headers:\n    - Bad Name: x\n", "s.yaml:6:7: 'Bad Name' is not a valid header name"),
        (
            "response:\n  headers:\n    - Transfer-Encoding: chunked\n",
            "s.yaml:6:7: 'Transfer-Encoding' cannot be replayed (the body is sent with Content-Length)",
        ),
        (
            "response:\n  headers:\n    - A: '{challenges}'\n    - B: '{challenges}'\n",
            "s.yaml:7:10: '{challenges}' may appear only once in 'headers'",
        ),
        ("response:\n  challenges: [basic, basic]\n", "s.yaml:5:23: scheme 'basic' is listed twice in 'challenges'"),
        ("response:\n  bad_credentials: {close: maybe}\n", "s.yaml:5:28: 'close' must be true or false, got a string"),
        (
            "response:\n  challenges: [{valeu: x}]\n",
            "s.yaml:5:17: unknown key 'valeu' in a challenge (did you mean 'value'?)",
        ),
    ],
)
def test_located_errors(section, expected):
    assert expected in errors(HEAD + section)


def test_generated_files_need_no_environment():
    scenario = parse_scenario(SHAPE, "s.yaml", Path("."), env={})
    assert scenario.response is not None and scenario.response.plain.reason == "Login Needed"


def test_denials_are_shaped_only_with_denied():
    denied = AuthResult(Result.DENIED, "denied by rule 1")
    scenario = parse_scenario(SHAPE, "s.yaml", Path("."))
    assert build_shaped_answer(scenario.response, denied, PLAIN, list, list, "hop1", deny=True) is None
    text = SHAPE + "  denied:\n    status: 403\n    reason: Locked\n    body: 'locked: {reason}'\n"
    a = answer(PLAIN, denied, text)  # answer() passes deny=False: a 407 shape still
    assert a.status == 407
    scenario = parse_scenario(text, "s.yaml", Path("."))
    a = build_shaped_answer(scenario.response, denied, CONNECT, list, list, "hop1", now=NOW, deny=True)
    assert (a.status, a.reason_phrase, a.body, a.close) == (403, "Locked", "locked: denied by rule 1", True)
    assert not [h for h in a.headers if h[0] == "Proxy-Authenticate"]  # a 403 offers no challenge by default
    assert [k for k, _ in a.headers] == ["Server", "Date", "Content-Length", "Connection"]


def test_response_headers_in_reverse_mode_take_the_servers_names():
    from mitm407.core.answers import as_server_header

    assert as_server_header("Proxy-Authenticate") == "WWW-Authenticate"  # Negotiate mutual auth (RFC 4559)
    assert as_server_header("Proxy-Authentication-Info") == "Authentication-Info"  # Digest (RFC 7615)
    assert as_server_header("Via") == "Via"
