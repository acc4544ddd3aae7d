"""SOCKS5 username/password in-process: the pure check (gate/socks5.py), the scenario key, and fail-closed.

No mitmproxy process: ``Socks5Gate.decide`` is called directly; the addon's
``socks5_auth`` hook gets a stand-in for mitmproxy's ``Socks5AuthData``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import bcrypt
import pytest

from mitm407.core.problems import ScenarioError
from mitm407.core.results import Result
from mitm407.gate.gate import Gate
from mitm407.gate.socks5 import Socks5Gate
from mitm407.scenario.load import parse_scenario


def socks_gate(tmp_path: Path, text: str = "", clock=None) -> Socks5Gate:
    scenario = parse_scenario("version: 1\nusers: {u: 'p:w'}\n" + text, str(tmp_path / "s.yaml"), tmp_path)
    return Socks5Gate(Gate(scenario) if clock is None else Gate(scenario, clock))


def check(g: Socks5Gate, user: str, password: str, **kwargs):
    return g.decide(user, password, "127.0.0.1", "c1", **kwargs)


def test_right_password_is_valid_and_told_as_socks5(tmp_path):
    decision = check(socks_gate(tmp_path), "u", "p:w")
    assert decision.valid and decision.auth.result is Result.OK
    assert decision.auth.scheme == "socks5" and "SOCKS5 credentials" in decision.auth.reason


@pytest.mark.parametrize(("user", "password", "result"), [
    ("u", "nope!", Result.BAD_CREDENTIALS),
    ("nobody", "p:w", Result.UNKNOWN_USER),
    ("u:p", "w", Result.MALFORMED),  # a ':' in the name must never become user 'u' with password 'p:w'
    ("", "", Result.UNKNOWN_USER),
])
def test_everything_else_is_refused(tmp_path, user, password, result):
    decision = check(socks_gate(tmp_path), user, password)
    assert not decision.valid and decision.auth.result is result and decision.auth.scheme == "socks5"
    assert password not in decision.auth.reason or not password


def test_always_refuse_fault(tmp_path):
    decision = check(socks_gate(tmp_path, "faults: [always_407]\n"), "u", "p:w")
    assert not decision.valid and decision.fired and decision.fired[0].name == "always_407"


def test_expiry_after_requests(tmp_path):
    g = socks_gate(tmp_path, "faults: [{expire_after: {requests: 1}}]\n")
    assert check(g, "u", "p:w").valid
    expired = check(g, "u", "p:w")
    assert not expired.valid and "expired" in expired.auth.reason


def test_bcrypt_is_a_slow_check_then_a_cache_hit(tmp_path):
    hashed = bcrypt.hashpw(b"slow", bcrypt.gensalt(4)).decode()
    (tmp_path / "h.htpasswd").write_text(f"b:{hashed}\n", encoding="utf-8")
    g = socks_gate(tmp_path, "htpasswd: h.htpasswd\n")
    first = check(g, "b", "slow")
    assert not first.valid and first.slow_check is not None  # the addon runs it off the event loop
    first.slow_check.scheme.remember(first.slow_check.credentials, first.slow_check.scheme.slow_check(
        first.slow_check.credentials))
    assert check(g, "b", "slow").valid


def test_scenario_key(tmp_path):
    assert socks_gate(tmp_path).gate.scenario.socks5.wants_password
    assert not socks_gate(tmp_path, "socks5: {auth: none}\n").gate.scenario.socks5.wants_password
    with pytest.raises(ScenarioError, match=r"s\.yaml:3:16"):
        socks_gate(tmp_path, "socks5: {auth: maybe}\n")
    with pytest.raises(ScenarioError, match="method"):
        socks_gate(tmp_path, "socks5: {method: x}\n")


class Exploding:
    """An auth addon whose gate raises on any use: the hook must refuse, not pass."""

    scenario = None
    connections: dict = {}

    @property
    def gate(self):
        raise RuntimeError("boom")


def test_any_exception_in_the_hook_refuses(caplog):
    from mitm407.proxy.socks5 import Socks5Auth

    data = SimpleNamespace(client_conn=SimpleNamespace(peername=("127.0.0.1", 1), id="c1"), username="u",
                           password="p:w", valid=True)
    assert Socks5Auth(Exploding()).socks5_auth(data) is None
    assert data.valid is False
    assert [r.message for r in caplog.records].count("mitm407: internal error in the SOCKS5 handshake; refused") == 1


def test_sentinel_is_not_a_user_setting():
    from mitm407.proxy.socks5 import SENTINEL, is_own_proxyauth

    assert is_own_proxyauth(SENTINEL) and not is_own_proxyauth("a:b") and not is_own_proxyauth(None)
    assert ":" in SENTINEL  # mitmproxy's built-in addon parses it as user:password, no error


def test_delay_and_drop_faults(tmp_path):
    delayed = check(socks_gate(tmp_path, "faults: [{delay: {ms: 250}}]\n"), "u", "p:w")
    assert delayed.valid and delayed.delay == 0.25
    dropped = check(socks_gate(tmp_path, "faults: [{drop: {at: success}}]\n"), "u", "p:w")
    assert not dropped.valid and dropped.auth.result is Result.DENIED
