"""Digest scheme (RFC 7616): the RFC's worked example, nonces, replays, bounded state.

Client-side answers are computed here with hashlib directly (``answer``), not
with the module's own functions, so a wrong formula in digest.py fails.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digestclient import H, answer
from mitm407.core.credentials import Secret, User
from mitm407.core.facts import RequestFacts
from mitm407.core.problems import ScenarioError
from mitm407.core.results import Result
from mitm407.gate.authorizer import Authorizer
from mitm407.scenario.load import parse_scenario
from mitm407.schemes.base import SchemeContext
from mitm407.schemes.digest import (
    ALGORITHMS,
    DigestOptions,
    DigestScheme,
    NcStore,
    NonceMint,
    NonceState,
    RandomPool,
    compute_ha1,
    compute_response,
)
from mitm407.wire.authparams import parse_auth_params

# RFC 7616 §3.9.1
RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
RFC_FACTS = RequestFacts("GET", "/dir/index.html", "www.example.org", 80, "/dir/index.html", "127.0.0.1", "c1")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_scheme(
    options: DigestOptions | None = None,
    clock: Clock | None = None,
    users: dict[str, User] | None = None,
    realm: str = "R",
) -> DigestScheme:
    users = users or {"alice": User("alice", Secret("cleartext", "pw"), "test")}
    scheme = DigestScheme(SchemeContext(realm, users, options or DigestOptions(), clock=clock or Clock()))
    scheme.nonces = NonceMint(scheme.options.nonce_ttl, scheme.context.clock, key=b"k" * 32, salt=lambda: b"\0" * 8)
    return scheme


class RfcNonces:
    """Stands in for the mint so that the RFC's own nonce is accepted."""

    ttl = 300.0

    def issue(self) -> str:
        return RFC_NONCE

    def check(self, nonce: str) -> tuple[NonceState, float]:
        return (NonceState.FRESH, 0.0) if nonce == RFC_NONCE else (NonceState.FORGED, 0.0)


# -- RFC 7616 §3.9.1 ---------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "expected"), [("MD5", RFC_MD5), ("SHA-256", RFC_SHA256)])
def test_rfc7616_worked_example(algorithm, expected):
    alg = ALGORITHMS[algorithm]
    ha1 = compute_ha1(alg, "Mufasa", RFC_REALM, "Circle of Life")
    got = compute_response(alg, ha1, RFC_NONCE, "00000001", RFC_CNONCE, "auth", "GET", "/dir/index.html")
    assert got == expected


@pytest.mark.parametrize(("algorithm", "expected"), [("MD5", RFC_MD5), ("SHA-256", RFC_SHA256)])
def test_rfc7616_example_credentials_verify(algorithm, expected):
    users = {"Mufasa": User("Mufasa", Secret("cleartext", "Circle of Life"), "test")}
    options = DigestOptions(algorithms=("SHA-256", "MD5"), opaque=RFC_OPAQUE)
    scheme = make_scheme(options, users=users, realm=RFC_REALM)
    scheme.nonces = RfcNonces()  # type: ignore[assignment]
    # the Authorization header of RFC 7616 §3.9.1, verbatim but for the algorithm
    credentials = (
        f'username="Mufasa", realm="{RFC_REALM}", uri="/dir/index.html", algorithm={algorithm}, '
        f'nonce="{RFC_NONCE}", nc=00000001, cnonce="{RFC_CNONCE}", qop=auth, '
        f'response="{expected}", opaque="{RFC_OPAQUE}"'
    )
    result = scheme.verify(credentials, RFC_FACTS)
    assert (result.result, result.user, result.reason) == (
        Result.OK,
        "Mufasa",
        f"valid Digest {algorithm} response for 'Mufasa'",
    )
    [(name, value)] = result.headers
    info = parse_auth_params(value)
    assert name == "Proxy-Authentication-Info"
    assert (info["qop"], info["nc"], info["cnonce"]) == ("auth", "00000001", RFC_CNONCE)
    # rspauth: the response computed with an empty method (RFC 7616 §3.5)
    ha1 = H(algorithm, f"Mufasa:{RFC_REALM}:Circle of Life")
    ha2 = H(algorithm, ":/dir/index.html")
    assert info["rspauth"] == H(algorithm, f"{ha1}:{RFC_NONCE}:00000001:{RFC_CNONCE}:auth:{ha2}")
    assert info["nextnonce"] == RFC_NONCE


# -- challenges ------------------------------------------------------------------


def test_challenges_one_per_algorithm_in_order_with_every_option():
    options = DigestOptions(
        algorithms=("SHA-512-256", "MD5-sess"),
        qop=("auth", "auth-int"),
        opaque='op"aque',
        domain=("/a", "http://b/"),
        userhash=True,
    )
    scheme = make_scheme(options, Clock(1.5))
    nonce = scheme.nonces.issue()
    # 1500 ms, eight zero bytes of salt, keyed BLAKE2s (key b"k" * 32) truncated to 16 bytes: base64url
    assert nonce == "AAAAAAAABdwAAAAAAAAAADHbgLJ86yZjRHK-z3i1m_s"
    tail = f'nonce="{nonce}", opaque="op\\"aque", domain="/a http://b/", charset=UTF-8, userhash=true'
    assert scheme.challenges(RFC_FACTS, stale=True) == [
        f'Digest realm="R", qop="auth, auth-int", algorithm=SHA-512-256, {tail}, stale=true',
        f'Digest realm="R", qop="auth, auth-int", algorithm=MD5-sess, {tail}, stale=true',
    ]


def test_rfc2069_only_challenge_has_no_qop():
    scheme = make_scheme(DigestOptions(algorithms=("MD5",), qop=(), rfc2069=True, charset=False))
    [challenge] = scheme.challenges(RFC_FACTS)
    assert challenge.startswith('Digest realm="R", algorithm=MD5, nonce="') and "qop" not in challenge


# -- verification ------------------------------------------------------------------

FACTS = RequestFacts("GET", "/x?y=1", "example.com", 80, "/x?y=1", "127.0.0.1", "c1")  # as mitmproxy gives it
ABSOLUTE = "http://example.com/x?y=1"


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_every_algorithm_verifies(algorithm):
    scheme = make_scheme(DigestOptions(algorithms=(algorithm,)))
    creds = answer(
        user="alice", password="pw", realm="R", nonce=scheme.nonces.issue(), uri=FACTS.target, algorithm=algorithm
    )
    assert scheme.verify(creds, FACTS).result is Result.OK


@pytest.mark.parametrize("uri", [ABSOLUTE, "/x?y=1", "HTTP://EXAMPLE.com:80/x?y=1"])
def test_uri_forms_accepted(uri):
    scheme = make_scheme()
    creds = answer(user="alice", password="pw", realm="R", nonce=scheme.nonces.issue(), uri=uri, algorithm="SHA-256")
    assert scheme.verify(creds, FACTS).result is Result.OK


def test_precise_reasons():
    scheme = make_scheme(DigestOptions(opaque="O"))
    nonce = scheme.nonces.issue()
    ok = {"user": "alice", "password": "pw", "realm": "R", "nonce": nonce, "uri": FACTS.target, "opaque": "O"}

    def reason(**changes):
        result = scheme.verify(answer(**{**ok, **changes}), FACTS)
        return result.result, result.reason

    assert reason(password="nope") == (
        Result.BAD_CREDENTIALS,
        "wrong response for user 'alice' (wrong password, or the client hashed other values; "
        "algorithm MD5, qop auth, uri '/x?y=1')",
    )
    assert reason(realm="Other") == (Result.BAD_CREDENTIALS, "realm 'Other' is not this proxy's realm")
    assert reason(uri="https://example.com/x?y=1")[0] is Result.BAD_CREDENTIALS  # other port
    assert reason(uri="http://other.example/x?y=1")[0] is Result.BAD_CREDENTIALS
    assert reason(uri="http://example.com/elsewhere") == (
        Result.BAD_CREDENTIALS,
        "uri 'http://example.com/elsewhere' does not match the request target '/x?y=1'",
    )
    assert reason(nonce=nonce[:-1] + ("A" if nonce[-1] != "A" else "B")) == (
        Result.BAD_CREDENTIALS,
        "nonce was not issued by this proxy (or before a restart)",
    )
    assert reason(user="mallory") == (Result.UNKNOWN_USER, "unknown user 'mallory'")
    assert reason(opaque="X") == (Result.BAD_CREDENTIALS, "opaque was not returned unchanged")
    assert reason(algorithm="SHA-512-256") == (
        Result.MALFORMED,
        "algorithm 'SHA-512-256' was not offered (SHA-256, MD5)",
    )
    assert reason(qop="auth-int") == (Result.MALFORMED, "qop 'auth-int' was not offered")
    assert reason(qop=None) == (Result.MALFORMED, "no qop (an RFC 2069 response); this scenario requires qop")
    assert reason(nc="1") == (Result.MALFORMED, "qop needs 'cnonce' and 'nc' (8 hex digits)")
    assert scheme.verify('username="alice", realm="R"', FACTS).reason == (
        "Digest credentials lack 'nonce', 'uri', 'response'"
    )
    assert scheme.verify('username="a", username="b"', FACTS).reason == (
        "malformed Digest credentials: parameter 'username' appears twice"
    )


def test_rfc2069_response_when_enabled():
    scheme = make_scheme(DigestOptions(qop=("auth",), rfc2069=True))
    creds = answer(user="alice", password="pw", realm="R", nonce=scheme.nonces.issue(), uri=FACTS.target, qop=None)
    result = scheme.verify(creds, FACTS)
    assert result.result is Result.OK
    assert parse_auth_params(result.headers[0][1]).keys() == {"nextnonce"}


def test_auth_int_hashes_the_body():
    scheme = make_scheme(DigestOptions(qop=("auth-int",)))
    nonce = scheme.nonces.issue()
    post = {"user": "alice", "password": "pw", "realm": "R", "nonce": nonce, "uri": "/x?y=1", "method": "POST"}
    facts = RequestFacts("POST", "/x?y=1", "example.com", 80, "/x?y=1", "127.0.0.1", "c1", body=b"payload")
    creds = answer(**post, qop="auth-int", body=b"payload")
    assert scheme.wants_body(creds) is True
    result = scheme.verify(creds, facts)
    assert result.result is Result.OK
    assert "rspauth" not in parse_auth_params(result.headers[0][1])  # needs the origin's body
    tampered = RequestFacts("POST", "/x?y=1", "example.com", 80, "/x?y=1", "127.0.0.1", "c1", body=b"PAYLOAD")
    creds2 = answer(**post, qop="auth-int", body=b"payload", nc="00000002")
    assert scheme.verify(creds2, tampered).result is Result.BAD_CREDENTIALS
    assert scheme.wants_body(answer(**post)) is False


def test_userhash():
    scheme = make_scheme(DigestOptions(userhash=True, algorithms=("SHA-256",)))
    nonce = scheme.nonces.issue()
    creds = answer(
        user="alice", password="pw", realm="R", nonce=nonce, uri=FACTS.target, algorithm="SHA-256", userhash=True
    )
    assert 'username="alice"' not in creds
    result = scheme.verify(creds, FACTS)
    assert (result.result, result.user) == (Result.OK, "alice")
    unknown = answer(
        user="bob",
        password="pw",
        realm="R",
        nonce=nonce,
        uri=FACTS.target,
        algorithm="SHA-256",
        userhash=True,
        nc="00000002",
    )
    assert scheme.verify(unknown, FACTS).reason == "unknown user (userhash matches no user)"


def test_username_star_rfc8187():
    users = {"jürgen": User("jürgen", Secret("cleartext", "pässwörd"), "test")}
    scheme = make_scheme(users=users)
    creds = answer(user="jürgen", password="pässwörd", realm="R", nonce=scheme.nonces.issue(), uri=FACTS.target)
    creds = creds.replace('username="jürgen"', "username*=UTF-8''j%C3%BCrgen")
    assert scheme.verify(creds, FACTS).result is Result.OK


# -- nonces, stale, replay, bounded state -------------------------------------------


def test_expired_nonce_is_stale_only_with_a_valid_response():
    clock = Clock()
    scheme = make_scheme(DigestOptions(nonce_ttl=60), clock)
    nonce = scheme.nonces.issue()
    clock.now += 61
    good = answer(user="alice", password="pw", realm="R", nonce=nonce, uri=FACTS.target)
    result = scheme.verify(good, FACTS)
    assert (result.result, result.reason) == (
        Result.STALE,
        "nonce expired 1 s ago (nonce_ttl 60 s); the 407 says stale=true",
    )
    bad = answer(user="alice", password="wrong", realm="R", nonce=nonce, uri=FACTS.target, nc="00000002")
    assert scheme.verify(bad, FACTS).result is Result.BAD_CREDENTIALS
    assert scheme.challenges(FACTS, stale=True)[0].endswith(", stale=true")


def test_nonce_mint_states():
    clock = Clock()
    mint = NonceMint(10, clock, key=b"a" * 32)
    nonce = mint.issue()
    assert mint.check(nonce) == (NonceState.FRESH, 0.0)
    clock.now += 10.5
    assert mint.check(nonce) == (NonceState.EXPIRED, 10.5)
    assert NonceMint(10, clock, key=b"b" * 32).check(nonce)[0] is NonceState.FORGED  # another process
    for junk in ["", "!!!", "AAAA", nonce + "AA", nonce[:-2]]:
        assert mint.check(junk)[0] is NonceState.FORGED
    assert len({mint.issue() for _ in range(50)}) == 50  # random salt: no two clients share a nonce


def test_nc_replay_refused_and_increasing_nc_accepted():
    scheme = make_scheme()
    nonce = scheme.nonces.issue()
    first = answer(user="alice", password="pw", realm="R", nonce=nonce, uri=FACTS.target)
    assert scheme.verify(first, FACTS).result is Result.OK
    replay = scheme.verify(first, FACTS)
    assert (replay.result, replay.reason) == (
        Result.BAD_CREDENTIALS,
        "nc 00000001 was already used with this nonce (replay)",
    )
    third = answer(user="alice", password="pw", realm="R", nonce=nonce, uri=FACTS.target, nc="00000003")
    assert scheme.verify(third, FACTS).result is Result.OK
    second = answer(user="alice", password="pw", realm="R", nonce=nonce, uri=FACTS.target, nc="00000002")
    assert scheme.verify(second, FACTS).result is Result.BAD_CREDENTIALS  # lower than the last one


def test_nc_store_is_a_bounded_lru():
    store = NcStore(2)
    assert store.accept("a", 1) and store.accept("b", 1)
    assert store.accept("a", 2)  # "a" is now the most recent
    assert store.accept("c", 1)  # evicts "b", the least recent
    assert len(store) == 2
    assert not store.accept("a", 2)  # still known: a replay
    assert store.accept("b", 1)  # forgotten: accepted again (documented trade-off)


def test_scheme_replay_store_respects_its_size():
    scheme = make_scheme(DigestOptions(nc_store_size=3))
    salts = iter(range(100))
    scheme.nonces.salt = lambda: next(salts).to_bytes(8, "big")
    for _ in range(10):
        creds = answer(user="alice", password="pw", realm="R", nonce=scheme.nonces.issue(), uri=FACTS.target)
        assert scheme.verify(creds, FACTS).result is Result.OK
    assert len(scheme.replays) == 3


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_credentials_give_a_result_never_an_exception(text):
    scheme = make_scheme()
    assert scheme.verify(text, FACTS).result in (Result.MALFORMED, Result.BAD_CREDENTIALS, Result.UNKNOWN_USER)


# -- htdigest and the scenario -----------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def scenario(tmp_path: Path, text: str):
    path = write(tmp_path, "s.yaml", textwrap.dedent(text) + "version: 1\n")  # last: the lines stay where they are
    return parse_scenario(path.read_text(), str(path), tmp_path)


def test_htdigest_users_answer_md5_only(tmp_path):
    ha1 = hashlib.md5(b"carol:R:pw").hexdigest()
    write(tmp_path, "users.htdigest", f"# comment\ncarol:R:{ha1}\n")
    loaded = scenario(
        tmp_path,
        """\
        realm: R
        htdigest: users.htdigest
        schemes: [digest, basic]
        digest: {algorithms: [SHA-256, MD5]}
        """,
    )
    digest = Authorizer(loaded).schemes[0]
    nonce = digest.nonces.issue()
    md5 = answer(user="carol", password="pw", realm="R", nonce=nonce, uri=FACTS.target)
    assert digest.verify(md5, FACTS).result is Result.OK
    sha = answer(
        user="carol", password="pw", realm="R", nonce=nonce, uri=FACTS.target, algorithm="SHA-256", nc="00000002"
    )
    assert digest.verify(sha, FACTS).reason == ("user 'carol' has only an MD5 HA1 (htdigest) and cannot answer SHA-256")
    assert loaded.users["carol"].secret.verify("pw") and not loaded.users["carol"].secret.verify("px")  # Basic


def test_htdigest_errors_are_located(tmp_path):
    ha1 = hashlib.md5(b"x").hexdigest()
    write(tmp_path, "users.htdigest", f"carol:R:{ha1}\ndave:Other:{ha1}\nerin:R:xyz\nbroken\n")
    with pytest.raises(ScenarioError) as e:
        scenario(tmp_path, "realm: R\nhtdigest: users.htdigest\nschemes: [digest]\n")
    file = str(tmp_path / "users.htdigest")
    assert [str(p) for p in e.value.problems] == [
        f"{file}:2:6: realm 'Other' of user 'dave' is not the scenario's realm 'R' "
        "(HA1 includes the realm: regenerate with htdigest FILE REALM USER, or change 'realm:')",
        f"{file}:3:8: HA1 of user 'erin' must be 32 hex digits (MD5)",
        f"{file}:4:1: htdigest line must be 'user:realm:HA1'",
    ]


def test_htpasswd_users_cannot_do_digest(tmp_path):
    write(tmp_path, "users.htpasswd", "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    with pytest.raises(ScenarioError, match="user 'bob' .* has only a hash, which Digest cannot use"):
        scenario(tmp_path, "htpasswd: users.htpasswd\nschemes: [digest]\n")


def test_digest_section_errors_are_located(tmp_path):
    with pytest.raises(ScenarioError) as e:
        scenario(
            tmp_path,
            """\
            users: {alice: pw}
            schemes: [digest]
            digest:
              algorithms: [SHA-256, MD4]
              qop: []
              nonce_tl: 30
            """,
        )
    file = str(tmp_path / "s.yaml")
    assert [str(p) for p in e.value.problems] == [
        f"{file}:4:25: unknown value 'MD4' for 'algorithms' item (did you mean 'MD5'?)",
        f"{file}:5:8: 'qop' is empty and 'rfc2069' is false: no client could answer",
        f"{file}:6:3: unknown key 'nonce_tl' in 'digest' (did you mean 'nonce_ttl'?)",
    ]


def test_authorizer_wants_body_only_for_auth_int(tmp_path):
    loaded = scenario(tmp_path, "users: {alice: pw}\nschemes: [digest, basic]\ndigest: {qop: [auth, auth-int]}\n")
    authorizer = Authorizer(loaded)
    assert authorizer.wants_body(['Digest username="a", qop=auth-int, nonce="x"'])
    assert not authorizer.wants_body(['Digest username="a", qop=auth, nonce="x"'])
    assert not authorizer.wants_body(["Basic YTpi"])
    assert not authorizer.wants_body([])


def test_random_pool_hands_out_fresh_pieces_across_refills():
    pool = RandomPool(8, block=32)  # four pieces per read of os.urandom
    pieces = [pool.take() for _ in range(10)]
    assert all(len(p) == 8 for p in pieces)
    assert len(set(pieces)) == 10  # 64 random bits each: a repeat means a piece was handed out twice


def test_default_nonces_differ_in_their_salt():
    mint = NonceMint(10, Clock(1.0))
    nonces = {mint.issue() for _ in range(600)}  # more than one 4 KiB block of salt
    assert len(nonces) == 600 and all(mint.check(n)[0] is NonceState.FRESH for n in nonces)
