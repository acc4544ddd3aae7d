"""The pure gate's decision table: facts, credentials and connection state in, one Outcome out.

No mitmproxy: ``Gate.decide`` is called directly with ``RequestFacts``.
"""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt

from digestclient import answer as digest_answer
from digestclient import params_of
from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.gate.gate import ConnectionState, Gate, GateRequest, Kind
from mitm407.scenario.load import parse_scenario

URL = "http://origin.test/page"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def facts(path: str = "/page", method: str = "GET", body: bytes | None = None, connection: str = "c1") -> RequestFacts:
    if method == "CONNECT":
        return RequestFacts("CONNECT", "origin.test:443", "origin.test", 443, "", "127.0.0.1", connection, True)
    return RequestFacts(method, f"http://origin.test{path}", "origin.test", 80, path, "127.0.0.1", connection,
                        body=body)


def gate(tmp_path: Path, text: str, clock=None) -> Gate:
    scenario = parse_scenario("version: 1\nusers: {u: pw}\n" + text, str(tmp_path / "s.yaml"), tmp_path)
    return Gate(scenario) if clock is None else Gate(scenario, clock)


def ask(g: Gate, *credentials: str, f: RequestFacts | None = None, **kwargs) -> object:
    return g.decide(GateRequest(f or facts(), list(credentials), **kwargs))


RULES = (
    "schemes: [basic]\nrules:\n"
    "  - {match: {path: [/secret]}, auth: deny}\n"
    "  - {match: {path: [/open]}, auth: none}\n"
)


def test_valid_credentials_forward_and_strip(tmp_path):
    out = ask(gate(tmp_path, RULES), basic("u", "pw"))
    assert out.kind is Kind.FORWARD and out.auth.result is Result.OK and out.strip_credentials
    assert not out.opens_tunnel and not out.authenticates_connection


def test_missing_and_wrong_credentials_are_answered_with_a_challenge(tmp_path):
    g = gate(tmp_path, RULES)
    for credentials in ((), (basic("u", "nope"),), ("Bogus x",)):
        out = ask(g, *credentials)
        assert out.kind is Kind.ANSWER and out.answer.status == 407
        assert ("Proxy-Authenticate", 'Basic realm="mitm407", charset="UTF-8"') in out.answer.headers


def test_rules_deny_and_bypass(tmp_path):
    g = gate(tmp_path, RULES)
    denied = ask(g, basic("u", "pw"), f=facts("/secret"))
    assert denied.kind is Kind.ANSWER and denied.answer.status == 403 and denied.auth.result is Result.DENIED
    bypass = ask(g, basic("u", "pw"), f=facts("/open"))
    assert bypass.kind is Kind.FORWARD and bypass.auth.result is Result.BYPASS and bypass.strip_credentials
    relayed = ask(g, basic("u", "pw"), f=facts("/open"), upstream=True)
    assert not relayed.strip_credentials  # upstream mode: they may be the upstream proxy's


def test_an_accepted_connect_asks_to_trust_its_tunnel_once_established(tmp_path):
    g = gate(tmp_path, RULES)
    out = ask(g, basic("u", "pw"), f=facts(method="CONNECT"))
    assert out.kind is Kind.FORWARD and out.opens_tunnel
    assert ask(g, f=facts(method="CONNECT")).kind is Kind.ANSWER


def test_inside_an_established_tunnel_requests_ride_on_it(tmp_path):
    tunnel = ConnectionState(tunnel=AuthResult(Result.OK, "ok", "basic", "u"))
    out = ask(gate(tmp_path, RULES), connection=tunnel)
    assert out.kind is Kind.FORWARD and out.auth.via_connection and out.auth.user == "u"
    assert not out.strip_credentials


def test_an_authenticated_connection_still_obeys_the_rules(tmp_path):
    g = gate(tmp_path, RULES)
    ntlm = ConnectionState(authenticated=AuthResult(Result.OK, "ok", "ntlm", "u", via_connection=True))
    assert ask(g, connection=ntlm).kind is Kind.FORWARD
    denied = ask(g, f=facts("/secret"), connection=ntlm)
    assert denied.kind is Kind.ANSWER and denied.answer.status == 403
    assert ask(g, f=facts("/open"), connection=ntlm).auth.result is Result.BYPASS


def test_new_credentials_on_an_authenticated_connection_start_over(tmp_path):
    ntlm = ConnectionState(authenticated=AuthResult(Result.OK, "ok", "ntlm", "u", via_connection=True))
    out = ask(gate(tmp_path, RULES), basic("u", "wrong"), connection=ntlm)
    assert out.kind is Kind.ANSWER and out.forget_connection
    inside_tls = ConnectionState(authenticated=ntlm.authenticated, tls=True)
    assert ask(gate(tmp_path, RULES), basic("u", "wrong"), connection=inside_tls).kind is Kind.FORWARD


def test_auth_int_needs_the_body_first(tmp_path):
    g = gate(tmp_path, "schemes: [digest]\ndigest: {qop: [auth-int]}\n")
    value = 'Digest username="u", qop=auth-int, nonce="x", uri="/", response="0"'
    assert ask(g, value).kind is Kind.NEED_BODY
    assert ask(g, value, f=facts(body=b"")).kind is Kind.ANSWER  # decided once the body is there


def test_an_uncached_bcrypt_check_is_deferred_unless_asked_inline(tmp_path):
    hashed = bcrypt.hashpw(b"slowpw", bcrypt.gensalt(4)).decode()
    (tmp_path / "h.htpasswd").write_text(f"slow:{hashed}\n")
    g = Gate(parse_scenario("version: 1\nhtpasswd: h.htpasswd\nschemes: [basic]\n", str(tmp_path / "s.yaml"),
                            tmp_path))
    deferred = ask(g, basic("slow", "slowpw"))
    assert deferred.kind is Kind.SLOW_CHECK and deferred.slow_check is not None
    inline = ask(g, basic("slow", "slowpw"), defer_slow=False)
    assert inline.kind is Kind.FORWARD and inline.auth.result is Result.OK
    assert ask(g, basic("slow", "slowpw")).kind is Kind.FORWARD  # cached now


def test_faults_become_plain_instructions(tmp_path):
    kill = ask(gate(tmp_path, "faults: [{drop: {at: success}}]\n"), basic("u", "pw"))
    assert kill.kind is Kind.KILL and kill.fired[0].name == "drop"
    late = ask(gate(tmp_path, "faults: [{drop: {at: response}}]\n"), basic("u", "pw"))
    assert late.kind is Kind.FORWARD and late.kill_on_response
    kept = ask(gate(tmp_path, "faults: [hop_by_hop]\n"), basic("u", "pw"))
    assert kept.kind is Kind.FORWARD and not kept.strip_credentials
    slow = ask(gate(tmp_path, "faults: [{delay: {ms: 250}}]\n"))
    assert slow.kind is Kind.ANSWER and slow.delay == 0.25


def test_rotation_swaps_users_without_rebuilding_the_schemes(tmp_path):
    g = gate(tmp_path, "schemes: [basic, digest]\nfaults: [{rotate: {user: u, passwords: [one, two], requests: 2}}]\n")
    schemes = g.authorizer.schemes
    challenge = next(v for k, v in ask(g).answer.headers if v.startswith("Digest"))
    nonce, realm = params_of(challenge)["nonce"], params_of(challenge)["realm"]
    assert [ask(g, basic("u", "one")).kind for _ in range(2)] == [Kind.FORWARD] * 2  # then it rotates
    assert ask(g, basic("u", "one")).kind is Kind.ANSWER
    assert ask(g, basic("u", "two")).kind is Kind.FORWARD
    assert g.authorizer.schemes is schemes  # the same objects: caches, nonces and handshakes kept
    value = "Digest " + digest_answer(user="u", password="two", realm=realm, nonce=nonce, uri=URL, qop="auth")
    out = ask(g, value)
    assert out.kind is Kind.FORWARD, out.auth  # a nonce issued before the rotation still works
