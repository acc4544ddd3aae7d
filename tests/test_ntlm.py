"""NTLM and Negotiate schemes, unit level: real tokens from pyspnego's client, stepped by hand."""

from __future__ import annotations

import base64
import struct
import textwrap
from pathlib import Path

import pytest
import spnego
from hypothesis import given, settings
from hypothesis import strategies as st

from mitm407.core.credentials import Secret, User
from mitm407.core.facts import RequestFacts
from mitm407.core.problems import ScenarioError
from mitm407.core.results import Result
from mitm407.scenario.load import load_scenario
from mitm407.schemes.base import SchemeContext
from mitm407.schemes.handshakes import HandshakeTable
from mitm407.schemes.negotiate import NTLM_OID, NegotiateScheme
from mitm407.schemes.ntlm import NtlmScheme
from mitm407.schemes.ntlm_acceptor import NtlmOptions
from mitm407.schemes.spnego_compat import Challenge, NegotiateFlags, NegTokenInit, NegTokenResp, unpack_token

KERBEROS_OID = "1.2.840.113554.1.2.2"
USERS = {
    "alice": User("alice", Secret("cleartext", "s3cret:with:colons"), "test", "CORP"),
    "bob": User("bob", Secret("cleartext", "hunter2"), "test"),
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def facts(connection: str = "c1") -> RequestFacts:
    return RequestFacts("GET", "http://x/", "x", 80, "/", "127.0.0.1", connection)


def ntlm(clock: Clock | None = None, **options) -> NtlmScheme:
    return NtlmScheme(SchemeContext("CORP", USERS, NtlmOptions(**options), clock=clock or Clock()))


def negotiate(**options) -> NegotiateScheme:
    return NegotiateScheme(SchemeContext("CORP", USERS, NtlmOptions(**options), clock=Clock()))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def client(user: str, password: str, protocol: str = "ntlm"):
    return spnego.client(user, password, hostname="proxy", service="HTTP", protocol=protocol)


def challenge_of(result, prefix: str = "NTLM ") -> bytes:
    """The token of the only Proxy-Authenticate header a CONTINUE carries."""
    assert result.result is Result.CONTINUE
    ((name, value),) = result.headers
    assert name == "Proxy-Authenticate" and value.startswith(prefix)
    return base64.b64decode(value[len(prefix) :])


def handshake(scheme, user: str, password: str, protocol: str = "ntlm", connection: str = "c1"):
    """Type 1 -> Type 2 -> Type 3 on one connection; returns the final result."""
    c = client(user, password, protocol)
    prefix = "NTLM " if protocol == "ntlm" else "Negotiate "
    type2 = challenge_of(scheme.verify(b64(c.step()), facts(connection)), prefix)
    return scheme.verify(b64(c.step(type2)), facts(connection))


# -- the handshake table ------------------------------------------------------------


def test_table_is_single_use_and_dropped_on_close():
    table: HandshakeTable[str] = HandshakeTable(10, 60, Clock())
    table.put("a", "x")
    assert table.take("a") == "x"
    assert table.take("a") is None  # one Type 3 per Type 1
    table.put("b", "y")
    table.drop("b")
    assert "b" not in table and len(table) == 0


def test_table_restart_replaces_and_cap_drops_oldest():
    table: HandshakeTable[str] = HandshakeTable(2, 60, Clock())
    table.put("a", "1")
    table.put("b", "2")
    table.put("a", "3")  # a new Type 1 restarts the handshake: now the newest
    table.put("c", "4")
    assert len(table) == 2 and "b" not in table
    assert table.take("a") == "3" and table.take("c") == "4"


def test_table_age_limit():
    clock = Clock()
    table: HandshakeTable[str] = HandshakeTable(10, 60, clock)
    table.put("old", "1")
    clock.now += 61
    assert table.take("old") is None
    table.put("a", "2")
    clock.now += 30
    table.put("b", "3")  # puts prune expired entries from the front
    clock.now += 31
    table.put("c", "4")
    assert "a" not in table and "b" in table and "c" in table


# -- NTLM: successes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "password", "shown"),
    [
        ("bob", "hunter2", "bob"),
        ("CORP\\alice", "s3cret:with:colons", "CORP\\alice"),  # password with colons works (no user file)
        ("alice@CORP", "s3cret:with:colons", "alice@CORP"),  # UPN form: empty domain field
        ("ALICE", "s3cret:with:colons", "ALICE"),  # NTLM user names are case-insensitive
    ],
)
def test_ntlmv2_handshake_succeeds(user, password, shown):
    result = handshake(ntlm(), user, password)
    assert result.result is Result.OK
    assert result.reason == f"NTLMv2 handshake completed for '{shown}'; connection authenticated"
    assert result.scheme == "ntlm" and result.user == user.split("\\")[-1].split("@")[0].lower()
    assert result.via_connection is True and result.headers == ()


def test_type2_shape_and_pinned_challenge():
    scheme = ntlm(domain="EXAMPLE", server="GATE")
    scheme.acceptor.random = lambda n: b"\x01\x23\x45\x67\x89\xab\xcd\xef"[:n]
    type2 = challenge_of(scheme.verify(b64(client("bob", "hunter2").step()), facts()))
    message = Challenge.unpack(type2)
    assert message.server_challenge == bytes.fromhex("0123456789abcdef")
    assert message.target_name == "EXAMPLE"
    assert message.flags & NegotiateFlags.extended_session_security  # asks for NTLMv2 (curl honours it)
    assert message.flags & NegotiateFlags.target_type_domain
    assert not message.flags & NegotiateFlags.target_type_server
    assert message.target_info[2] == "EXAMPLE" and message.target_info[1] == "GATE"  # no host name leaked


# -- NTLM: refusals ----------------------------------------------------------------------


def test_wrong_password_and_unknown_user():
    result = handshake(ntlm(), "bob", "wrong")
    assert (result.result, result.reason, result.user) == (
        Result.BAD_CREDENTIALS,
        "wrong password for NTLM user 'bob'",
        "bob",
    )
    result = handshake(ntlm(), "mallory", "x")
    assert (result.result, result.reason) == (Result.UNKNOWN_USER, "unknown user (NTLM user 'mallory')")
    assert not result.via_connection


@pytest.mark.parametrize(
    ("check", "user", "ok"),
    [
        ("any", "OTHER\\alice", True),
        ("optional", "OTHER\\alice", False),
        ("optional", "alice", True),
        ("optional", "corp\\alice", True),
        ("exact", "alice", False),
        ("exact", "CORP\\alice", True),
        ("exact", "bob", True),  # no domain configured: only an empty domain matches
        ("exact", "CORP\\bob", False),
        ("exact", "alice@corp", True),
    ],
)
def test_domain_check(check, user, ok):
    password = "hunter2" if "bob" in user else "s3cret:with:colons"
    result = handshake(ntlm(domain_check=check), user, password)
    assert (result.result is Result.OK) is ok, result.reason
    if not ok:
        assert result.result is Result.UNKNOWN_USER
        assert f"does not match the user's domain (domain_check: {check})" in result.reason


def test_upn_off_takes_the_user_field_literally():
    result = handshake(ntlm(upn=False), "alice@CORP", "s3cret:with:colons")
    assert (result.result, result.reason) == (Result.UNKNOWN_USER, "unknown user (NTLM user 'alice@CORP')")


def test_type3_without_type1_and_on_another_connection():
    scheme = ntlm()
    c = client("bob", "hunter2")
    type1 = c.step()
    type2 = challenge_of(scheme.verify(b64(type1), facts("c1")))
    type3 = b64(c.step(type2))
    on_other = scheme.verify(type3, facts("c2"))
    assert on_other.result is Result.MALFORMED
    assert on_other.reason == (
        "NTLM type 3 message without a pending type 1 on this connection "
        "(never sent, timed out, or sent on another connection)"
    )
    assert scheme.verify(type3, facts("c1")).result is Result.OK
    assert scheme.verify(type3, facts("c1")).result is Result.MALFORMED  # replay: state used once


def test_closed_connection_mid_handshake_restarts_cleanly():
    scheme = ntlm()
    c = client("bob", "hunter2")
    type2 = challenge_of(scheme.verify(b64(c.step()), facts("c1")))
    scheme.connection_closed("c1")
    assert len(scheme.acceptor.pending) == 0
    assert scheme.verify(b64(c.step(type2)), facts("c1")).result is Result.MALFORMED
    assert handshake(scheme, "bob", "hunter2", connection="c1").result is Result.OK


def test_handshake_times_out():
    clock = Clock()
    scheme = ntlm(clock, handshake_timeout=5)
    c = client("bob", "hunter2")
    type2 = challenge_of(scheme.verify(b64(c.step()), facts()))
    clock.now += 6
    assert scheme.verify(b64(c.step(type2)), facts()).result is Result.MALFORMED


def test_tampered_mic_is_refused():
    scheme = ntlm()
    c = client("bob", "hunter2")
    type3 = bytearray(c.step(challenge_of(scheme.verify(b64(c.step()), facts()))))
    type3[72] ^= 0xFF  # the MIC field (after the 8-byte Version at 64)
    result = scheme.verify(b64(bytes(type3)), facts())
    assert (result.result, result.reason) == (
        Result.MALFORMED,
        "NTLM type 3 MIC does not match for 'bob' (message altered)",
    )


def test_ntlmv1_refused_unless_the_scenario_allows_it(monkeypatch):
    monkeypatch.setenv("LM_COMPAT_LEVEL", "2")  # pyspnego's client then answers NTLMv1 (legacy)
    refused = handshake(ntlm(), "bob", "hunter2")
    assert refused.result is Result.MALFORMED
    assert refused.reason == (
        "NTLMv1/LM response refused for 'bob' (NTLMv2 only; the scenario can allow it with ntlm.ntlmv1)"
    )
    accepted = handshake(ntlm(ntlmv1=True), "bob", "hunter2")
    assert (accepted.result, accepted.reason) == (
        Result.OK,
        "NTLMv1 handshake completed for 'bob'; connection authenticated",
    )
    assert handshake(ntlm(ntlmv1=True), "bob", "nope").result is Result.BAD_CREDENTIALS


def _type1() -> bytes:
    return client("bob", "hunter2").step()


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "empty NTLM token"),
        ("!!!not base64", "NTLM token is not valid base64"),
        ("A" * 20000, "NTLM token too long (20000 characters)"),
        (b64(b"hello world, no signature"), "not an NTLM message (no NTLMSSP signature)"),
        (b64(b"NTLMSSP\x00" + struct.pack("<I", 2) + b"\x00" * 40), "NTLM message type 2 is not one a client sends"),
        (b64(b"NTLMSSP\x00" + struct.pack("<I", 1)), "NTLM type 1 message cannot be parsed"),
        (
            b64(b"NTLMSSP\x00" + struct.pack("<II", 1, 0) + b"\x00" * 20),
            "NTLM type 1 message sets neither the UNICODE nor the OEM flag",
        ),
    ],
)
def test_garbage_tokens_are_malformed(token, reason):
    result = ntlm().verify(token, facts())
    assert (result.result, result.reason, result.scheme) == (Result.MALFORMED, reason, "ntlm")


def test_truncated_type3_and_anonymous():
    scheme = ntlm()
    scheme.verify(b64(_type1()), facts())
    result = scheme.verify(b64(b"NTLMSSP\x00" + struct.pack("<I", 3) + b"\xff" * 10), facts())
    assert (result.result, result.reason) == (Result.MALFORMED, "NTLM type 3 message cannot be parsed")
    scheme.verify(b64(_type1()), facts())
    anonymous = b"NTLMSSP\x00" + struct.pack("<I", 3) + b"\x00" * 52 + struct.pack("<I", 0x201)
    result = scheme.verify(b64(anonymous), facts())
    assert (result.result, result.reason) == (Result.MALFORMED, "anonymous NTLM (no user name) is not accepted")


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from([1, 3]), body=st.binary(max_size=200))
def test_fuzzed_messages_never_raise(kind, body):
    scheme = ntlm()
    scheme.verify(b64(_type1_cached()), facts())  # a pending handshake, so type 3 parsing is reached
    result = scheme.verify(b64(b"NTLMSSP\x00" + struct.pack("<I", kind) + body), facts())
    assert result.result in (Result.MALFORMED, Result.CONTINUE, Result.UNKNOWN_USER, Result.BAD_CREDENTIALS)


_TYPE1: list[bytes] = []


def _type1_cached() -> bytes:
    if not _TYPE1:
        _TYPE1.append(_type1())
    return _TYPE1[0]


# -- Negotiate ---------------------------------------------------------------------------


def test_negotiate_spnego_wrapping_ntlm():
    scheme = negotiate()
    assert scheme.challenges(facts()) == ["Negotiate"]
    c = client("CORP\\alice", "s3cret:with:colons", "negotiate")
    first = scheme.verify(b64(c.step()), facts())
    reply = unpack_token(challenge_of(first, "Negotiate "))
    assert isinstance(reply, NegTokenResp)
    assert (int(reply.neg_state), reply.supported_mech) == (1, NTLM_OID)  # accept-incomplete, NTLM chosen
    assert reply.response_token.startswith(b"NTLMSSP\x00\x02")
    result = scheme.verify(b64(c.step(challenge_of(first, "Negotiate "))), facts())
    assert (result.result, result.scheme, result.user, result.via_connection) == (Result.OK, "negotiate", "alice", True)


def test_negotiate_raw_ntlm_under_the_negotiate_name():
    scheme = negotiate()
    c = client("bob", "hunter2")
    type2 = challenge_of(scheme.verify(b64(c.step()), facts()), "Negotiate ")
    assert type2.startswith(b"NTLMSSP\x00\x02")  # answered raw, as sent
    assert scheme.verify(b64(c.step(type2)), facts()).result is Result.OK


def test_negotiate_kerberos_only_is_refused():
    token = NegTokenInit(mech_types=[KERBEROS_OID], mech_token=b"\x60\x01\x00").pack()
    result = negotiate().verify(b64(token), facts())
    assert (result.result, result.reason) == (
        Result.MALFORMED,
        "Negotiate token offers Kerberos, not NTLM (Kerberos is not supported)",
    )


def test_negotiate_selects_ntlm_when_kerberos_was_preferred():
    scheme = negotiate()
    init = NegTokenInit(mech_types=[KERBEROS_OID, NTLM_OID], mech_token=b"optimistic kerberos").pack()
    first = scheme.verify(b64(init), facts())
    reply = unpack_token(challenge_of(first, "Negotiate "))
    assert (int(reply.neg_state), reply.supported_mech, reply.response_token) == (1, NTLM_OID, None)
    c = client("bob", "hunter2")
    second = scheme.verify(b64(NegTokenResp(response_token=c.step()).pack()), facts())
    type2 = unpack_token(challenge_of(second, "Negotiate ")).response_token
    third = scheme.verify(b64(NegTokenResp(response_token=c.step(type2)).pack()), facts())
    assert third.result is Result.OK


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (b64(b"\x30\x03\x02\x01"), "Negotiate token is neither SPNEGO nor NTLM (Kerberos is not supported)"),
        (b64(b"\xa0\x05\x02"), "Negotiate token is neither SPNEGO nor NTLM (Kerberos is not supported)"),
        (b64(NegTokenResp(neg_state=1).pack()), "SPNEGO NegTokenResp without a response token"),
        ("%%%", "Negotiate token is not valid base64"),
    ],
)
def test_negotiate_garbage_is_malformed(token, reason):
    result = negotiate().verify(token, facts())
    assert (result.result, result.reason) == (Result.MALFORMED, reason)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=120))
def test_negotiate_fuzz_never_raises(body):
    assert negotiate().verify(b64(body), facts()).result in (Result.MALFORMED, Result.CONTINUE)


# -- scenario sections ---------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_ntlm_section_is_validated(tmp_path):
    path = _write(
        tmp_path,
        """\
        version: 1
        users: {a: b}
        schemes: [ntlm]
        ntlm:
          domain_check: strict
          ntlmv2: true
        """,
    )
    with pytest.raises(ScenarioError) as e:
        load_scenario(path, env={})
    assert [str(p) for p in e.value.problems] == [
        f"{path}:5:17: unknown value 'strict' for 'domain_check' (expected one of: any, exact, optional)",
        f"{path}:6:3: unknown key 'ntlmv2' in 'ntlm' (did you mean 'ntlmv1'?)",
    ]


def test_ntlm_needs_cleartext_users(tmp_path):
    (tmp_path / "h").write_text("carol:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n")
    path = _write(tmp_path, "version: 1\nhtpasswd: h\nschemes: [negotiate, ntlm]\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(path, env={})
    assert [str(p) for p in e.value.problems] == [
        f"{path}:2:11: user 'carol' ({tmp_path / 'h'}:1) has only a hash, which Negotiate cannot use "
        "(give Negotiate users a password in 'users:')",
        f"{path}:2:11: user 'carol' ({tmp_path / 'h'}:1) has only a hash, which NTLM cannot use "
        "(give NTLM users a password in 'users:')",
    ]


def test_negotiate_section_can_alias_the_ntlm_one(tmp_path):
    path = _write(
        tmp_path,
        """\
        version: 1
        users: {a: b}
        schemes: [negotiate, ntlm]
        ntlm: &ntlm {domain: CORP, domain_check: exact}
        negotiate: *ntlm
        """,
    )
    scenario = load_scenario(path, env={})
    assert scenario.scheme_options["ntlm"] == scenario.scheme_options["negotiate"]
    assert scenario.scheme_options["negotiate"].domain_check == "exact"


def test_handshake_challenge_is_www_authenticate_in_reverse_mode():
    from mitm407.core.answers import build_challenge

    step = ntlm().verify(b64(_type1()), facts())
    as_proxy = build_challenge(step, [], True, "hop")
    as_server = build_challenge(step, [], False, "hop")
    assert (as_proxy.status, [k for k, _ in as_proxy.headers]) == (407, ["Proxy-Authenticate"])
    assert (as_server.status, [k for k, _ in as_server.headers]) == (401, ["WWW-Authenticate"])
    assert as_server.headers[0][1] == as_proxy.headers[0][1] and as_server.headers[0][1].startswith("NTLM TlRMTVNTUAAC")
