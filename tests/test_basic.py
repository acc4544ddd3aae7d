"""Basic scheme: parsing (RFC 7617), challenge, and the verified-credentials cache."""

from __future__ import annotations

import base64

import bcrypt
import pytest

from mitm407.core.credentials import Secret, User
from mitm407.core.facts import RequestFacts
from mitm407.core.results import Result
from mitm407.schemes.base import SchemeContext
from mitm407.schemes.basic import BasicScheme, build_basic_challenge
from mitm407.wire.basic import BasicCredentialsError, parse_basic_credentials

FACTS = RequestFacts("GET", "http://x/", "x", 80, "/", "127.0.0.1", "c1")


def token(text: str, encoding: str = "utf-8") -> str:
    return base64.b64encode(text.encode(encoding)).decode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice:pw", ("alice", "pw")),
        ("alice:pw:with:colons", ("alice", "pw:with:colons")),
        ("alice:", ("alice", "")),
        (":pw", ("", "pw")),
        ("jürgen:pässwörd€", ("jürgen", "pässwörd€")),
    ],
)
def test_parse_splits_on_first_colon_utf8(raw, expected):
    assert parse_basic_credentials(token(raw)) == expected
    assert parse_basic_credentials("  " + token(raw) + "  ") == expected


def test_parse_latin1_fallback():
    assert parse_basic_credentials(token("jürgen:pässwörd", "iso-8859-1")) == ("jürgen", "pässwörd")


def test_parse_missing_padding_tolerated():
    assert parse_basic_credentials(token("a:bc").rstrip("=")) == ("a", "bc")


@pytest.mark.parametrize("bad", ["", "!!!", token("nocolon"), "a b c", "A" * 20000, "YQ==YQ=="])
def test_parse_rejects(bad):
    with pytest.raises(BasicCredentialsError):
        parse_basic_credentials(bad)


def test_challenge_escapes_realm():
    assert build_basic_challenge('Co"rp\\') == 'Basic realm="Co\\"rp\\\\", charset="UTF-8"'
    assert build_basic_challenge("X", charset=False) == 'Basic realm="X"'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scheme_with(secret: Secret, clock: Clock, ttl: float = 60.0, size: int = 100) -> BasicScheme:
    users = {"alice": User("alice", secret, "test")}
    return BasicScheme(SchemeContext("R", users, None, ttl, size, clock))


def test_results_and_reasons():
    scheme = scheme_with(Secret("cleartext", "pw"), Clock())
    assert scheme.verify(token("alice:pw"), FACTS).result is Result.OK
    bad = scheme.verify(token("alice:nope"), FACTS)
    assert (bad.result, bad.reason, bad.user) == (Result.BAD_CREDENTIALS, "wrong password for user 'alice'", "alice")
    unknown = scheme.verify(token("mallory:pw"), FACTS)
    assert (unknown.result, unknown.reason) == (Result.UNKNOWN_USER, "unknown user 'mallory'")
    assert scheme.verify("!!", FACTS).result is Result.MALFORMED
    for result in (bad, unknown):
        assert "nope" not in result.reason and "pw" not in result.reason


def counted_bcrypt(monkeypatch) -> tuple[str, list[int]]:
    """A bcrypt hash of "pw", and a list that grows by one per bcrypt.checkpw call."""
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    calls: list[int] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda p, h: calls.append(1) or real(p, h))
    return hashed, calls


def test_bcrypt_verified_once_then_cached(monkeypatch):
    hashed, calls = counted_bcrypt(monkeypatch)
    clock = Clock()
    scheme = scheme_with(Secret("bcrypt", hashed), clock, ttl=60)
    for _ in range(50):
        assert scheme.verify(token("alice:pw"), FACTS).result is Result.OK
    assert len(calls) == 1
    # a wrong password is never accepted; its refusal cost a bcrypt, so it is cached too:
    # a client retrying it does not cost the proxy 50 ms per request
    for _ in range(3):
        assert scheme.verify(token("alice:wrong"), FACTS).result is Result.BAD_CREDENTIALS
    assert len(calls) == 2
    assert scheme.verify(token("alice:pw"), FACTS).result is Result.OK
    # after the TTL both are verified again
    clock.now += 61
    assert scheme.verify(token("alice:pw"), FACTS).result is Result.OK
    assert scheme.verify(token("alice:wrong"), FACTS).result is Result.BAD_CREDENTIALS
    assert len(calls) == 4


def test_slow_check_pending_only_for_an_uncached_slow_secret(monkeypatch):
    """The addon moves a check off the event loop only when verify would run bcrypt."""
    hashed, calls = counted_bcrypt(monkeypatch)
    clock = Clock()
    users = {
        "alice": User("alice", Secret("bcrypt", hashed), "t"),
        "carol": User("carol", Secret("cleartext", "pw"), "t"),
    }
    scheme = BasicScheme(SchemeContext("R", users, None, 60, 100, clock))
    assert scheme.has_slow_secrets
    for cheap in ("carol:pw", "carol:wrong", "mallory:pw", "nocolon"):
        assert not scheme.slow_check_pending(token(cheap)), cheap
    assert not scheme.slow_check_pending("!!")  # malformed: verify refuses it without a hash
    for attempt, expected in (("alice:pw", Result.OK), ("alice:wrong", Result.BAD_CREDENTIALS)):
        assert scheme.slow_check_pending(token(attempt))
        scheme.remember(token(attempt), scheme.slow_check(token(attempt)))
        assert not scheme.slow_check_pending(token(attempt))
        assert scheme.verify(token(attempt), FACTS).result is expected
    assert len(calls) == 2  # one bcrypt each, in slow_check; verify hit the cache
    clock.now += 61  # expired: pending again, as verify would check again
    assert scheme.slow_check_pending(token("alice:pw"))
    assert len(calls) == 2
    assert not BasicScheme(SchemeContext("R", {"carol": users["carol"]}, None, 60, 100, clock)).has_slow_secrets


def test_remember_caches_exactly_what_verify_would(monkeypatch):
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    warmed, direct = scheme_with(Secret("bcrypt", hashed), Clock()), scheme_with(Secret("bcrypt", hashed), Clock())
    for attempt in ("alice:pw", "alice:wrong"):
        warmed.remember(token(attempt), warmed.slow_check(token(attempt)))
        assert warmed.verify(token(attempt), FACTS) == direct.verify(token(attempt), FACTS)
    # a cheap refusal is not cached by verify, nor by remember
    cheap = scheme_with(Secret("cleartext", "pw"), Clock())
    cheap.remember(token("alice:wrong"), cheap.slow_check(token("alice:wrong")))
    assert len(cheap._verified) == 0
    # remembering a key already cached replaces it in place: nothing else is evicted
    full = scheme_with(Secret("bcrypt", hashed), Clock(), size=2)
    for attempt in ("alice:pw", "alice:wrong", "alice:wrong"):
        full.remember(token(attempt), full.slow_check(token(attempt)))
    assert len(full._verified) == 2 and not full.slow_check_pending(token("alice:pw"))


def test_cheap_refusals_are_not_cached():
    scheme = scheme_with(Secret("cleartext", "pw"), Clock())
    for attempt in ("alice:wrong", "mallory:pw", "nocolon"):
        assert not scheme.verify(token(attempt), FACTS).ok
    assert len(scheme._verified) == 0


def test_cache_is_bounded():
    clock = Clock()
    users = {f"u{i}": User(f"u{i}", Secret("cleartext", "pw"), "t") for i in range(50)}
    scheme = BasicScheme(SchemeContext("R", users, None, 60, 10, clock))
    for i in range(50):
        assert scheme.verify(token(f"u{i}:pw"), FACTS).result is Result.OK
    assert len(scheme._verified) == 10
