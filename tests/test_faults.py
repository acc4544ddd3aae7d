"""Faults without a proxy: settings validation (exact file:line:col) and the pure engine with a fake clock."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from mitm407.core.answers import Answer
from mitm407.core.facts import RequestFacts
from mitm407.core.problems import ScenarioError
from mitm407.core.results import Result
from mitm407.faults.answers import rewrite_realms
from mitm407.faults.base import Pacer, Trigger
from mitm407.faults.engine import FaultEngine, Fired
from mitm407.gate.authorizer import Action, Authorizer
from mitm407.scenario.load import load_scenario
from procs import basic

PLAIN = RequestFacts("GET", "http://example.com/", "example.com", 80, "/", "127.0.0.1", "c1")
CONNECT = RequestFacts("CONNECT", "example.com:443", "example.com", 443, "", "127.0.0.1", "c2", is_connect=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(tmp_path: Path, faults: str, extra: str = "") -> Path:
    path = tmp_path / "s.yaml"
    text = "version: 1\nusers: {alice: pw, bob: pw2}\n" + extra + "faults:\n" + textwrap.indent(
        textwrap.dedent(faults), "  "
    )
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as e:
        load_scenario(path, env={})
    return [str(p) for p in e.value.problems]


class Proxy:
    """Authorizer + engine as the gate wires them (a rotation swaps users in the authorizer's directory)."""

    def __init__(self, path: Path) -> None:
        self.scenario = load_scenario(path, env={})
        self.clock = Clock()
        self.engine = FaultEngine(self.scenario, self.clock)
        self.authorizer = Authorizer(self.scenario)

    def ask(self, user: str | None = None, password: str = "pw", facts: RequestFacts = PLAIN):
        users = self.engine.rotated_users()
        if users is not None:
            self.authorizer.users.replace_users(users)
        headers = [basic(user, password)] if user else []
        return self.engine.decide(facts, self.authorizer.evaluate(facts, headers, "Proxy-Authorization"))


def test_settings_errors_are_located(tmp_path):
    path = write(
        tmp_path,
        """\
        - expire_after: {requests: 2, seconds: 3}
        - lockout: {failures: 0, status: 401}
        - delay: {on: later}
        - drop: {at: nowhere, probability: 2}
        - exprie_after: {requests: 1}
        - rotate: {user: alice, passwords: [only-one]}
        - always_407: {x: 1}
        - {always_407: , close_on_407: }
        """,
    )
    assert problems(path) == [
        f"{path}:4:19: 'expire_after' needs exactly one of 'requests' and 'seconds'",
        f"{path}:5:25: 'failures' must be at least 1, got 0",
        f"{path}:5:36: 'status' must be one of 403, 407, got 401",
        f"{path}:6:12: 'delay' needs 'ms' (e.g. {{ms: 500, on: challenge}})",
        f"{path}:6:17: unknown value 'later' for 'on' (expected one of: any, challenge, success)",
        f"{path}:7:16: unknown value 'nowhere' for 'at' (expected one of: after_connect, challenge, request, "
        "response, success)",
        f"{path}:7:38: 'probability' must be between 0 and 1, got 2",
        f"{path}:8:5: unknown fault 'exprie_after' (did you mean 'expire_after'?)",
        f"{path}:9:13: 'rotate' needs exactly one of 'requests' and 'period'",
        f"{path}:9:38: 'rotate' needs at least two 'passwords'",
        f"{path}:10:18: unknown key 'x' in 'always_407'",
        f"{path}:11:5: each fault is a one-key mapping, e.g. '- expire_after: {{requests: 3}}'",
    ]


def test_rotate_only_at_top_level(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "version: 1\nusers: {a: b}\nrules:\n  - match: {path: /x}\n    auth: required\n"
        "    faults: [{rotate: {user: a, passwords: [x, y], requests: 1}}]\n"
    )
    assert problems(path) == [
        f"{path}:6:15: 'rotate' applies to the whole proxy (list it under the top-level 'faults:')"
    ]


def test_rotate_repr_hides_passwords(tmp_path):
    scenario = load_scenario(write(tmp_path, "- rotate: {user: alice, passwords: [s3cret-a, s3cret-b], period: 5}"))
    assert "s3cret" not in repr(scenario.faults)


def test_expire_after_seconds_per_user(tmp_path):
    proxy = Proxy(write(tmp_path, "- expire_after: {seconds: 30}"))
    assert proxy.ask("alice").verdict.action is Action.FORWARD  # first use starts alice's clock
    proxy.clock.now += 29
    assert proxy.ask("alice").verdict.action is Action.FORWARD
    assert proxy.ask("bob", "pw2").verdict.action is Action.FORWARD  # bob's clock starts now
    proxy.clock.now += 1
    expired = proxy.ask("alice")
    assert expired.verdict.action is Action.CHALLENGE
    assert expired.verdict.auth.result is Result.BAD_CREDENTIALS
    assert expired.fired == (Fired("expire_after", "credentials of 'alice' expired 30 s after their first use"),)
    assert proxy.ask("bob", "pw2").verdict.action is Action.FORWARD


def test_rotate_by_period_starts_at_first_request(tmp_path):
    proxy = Proxy(write(tmp_path, "- rotate: {user: alice, passwords: [one, two, three], period: 10}"))
    proxy.clock.now += 500  # start-up time does not count
    assert proxy.ask("alice", "one").verdict.action is Action.FORWARD
    proxy.clock.now += 9.9
    assert proxy.ask("alice", "one").verdict.action is Action.FORWARD
    proxy.clock.now += 0.1
    rotated = proxy.ask("alice", "one")
    assert rotated.verdict.action is Action.CHALLENGE
    assert rotated.fired == (Fired("rotate", "password of 'alice' rotated: password 2 of 3 is now the valid one"),)
    assert proxy.ask("alice", "two").verdict.action is Action.FORWARD
    proxy.clock.now += 20  # cycle: true wraps around to the first password
    assert proxy.ask("alice", "one").verdict.action is Action.FORWARD
    assert proxy.ask("bob", "pw2").verdict.action is Action.FORWARD  # other users keep their password


def test_lockout_407_and_reset_on_success(tmp_path):
    proxy = Proxy(write(tmp_path, "- lockout: {failures: 3, seconds: 60, status: 407}"))
    assert proxy.ask("alice", "bad").fired == ()
    assert proxy.ask("alice", "pw").verdict.action is Action.FORWARD  # success resets the count
    proxy.ask("alice", "bad")
    proxy.ask("alice", "bad")
    third = proxy.ask("alice", "bad")
    assert third.fired == (Fired("lockout", "user 'alice' locked out for 60 s after 3 failed logins"),)
    proxy.clock.now += 59.5
    locked = proxy.ask("alice", "pw")
    assert locked.verdict.action is Action.CHALLENGE
    assert locked.verdict.auth.reason == (
        "user 'alice' is locked out for 0 more seconds after 3 failed logins (fault lockout)"
    )
    proxy.clock.now += 0.5
    assert proxy.ask("alice", "pw").verdict.action is Action.FORWARD


def test_reauth_every_seconds_is_stale(tmp_path):
    proxy = Proxy(write(tmp_path, "- reauth_every: {seconds: 10}"))
    assert proxy.ask("alice").verdict.action is Action.FORWARD
    proxy.clock.now += 10
    again = proxy.ask("alice")
    assert (again.verdict.action, again.verdict.auth.result) == (Action.CHALLENGE, Result.STALE)
    assert proxy.ask("alice").verdict.action is Action.FORWARD  # the retry right after passes


def test_connect_only_and_rule_faults_come_first(tmp_path):
    extra = "rules:\n  - match: {path: /always}\n    auth: required\n    faults: [always_407]\n"
    proxy = Proxy(write(tmp_path, "- connect_only", extra))
    assert proxy.ask().verdict.auth.result is Result.BYPASS
    assert proxy.ask(facts=CONNECT).verdict.action is Action.CHALLENGE
    always = RequestFacts("GET", "http://example.com/always", "example.com", 80, "/always", "127.0.0.1", "c1")
    # the rule's always_407 runs first, then the scenario's connect_only lets plain HTTP through
    assert [f.name for f in proxy.ask("alice", facts=always).fired] == ["always_407", "connect_only"]


def test_answer_faults_in_order(tmp_path):
    path = write(tmp_path, "- challenge_malformed: {kind: unknown_first, scheme: Bearer}\n- close_on_407\n")
    proxy = Proxy(path)
    decision = proxy.ask()
    answer = Answer(407, (("Proxy-Authenticate", 'Basic realm="mitm407"'),), "body")
    out, fired = proxy.engine.rewrite(answer, decision, PLAIN)
    assert out.headers == (
        ("Proxy-Authenticate", 'Bearer realm="mitm407"'),
        ("Proxy-Authenticate", 'Basic realm="mitm407"'),
    )
    assert out.close is True
    assert [f.name for f in fired] == ["challenge_malformed", "close_on_407"]
    assert proxy.engine.rewrite(answer, proxy.ask("alice"), PLAIN) == (answer, ())  # accepted: nothing to reshape


def test_block_page_on_connect_is_403(tmp_path):
    proxy = Proxy(write(tmp_path, "- block_page: {status: 200}"))
    decision = proxy.ask(facts=CONNECT)
    out, _ = proxy.engine.rewrite(Answer(407, (), ""), decision, CONNECT)
    assert out.status == 403 and "Requested: example.com:443" in out.body


def test_block_page_escapes_the_request_target(tmp_path):
    """The page is text/html: a URL the client chose must not become markup (issue 14)."""
    proxy = Proxy(write(tmp_path, '- block_page: {title: "<b>Sign in</b>", location: "http://x/?a=1&b=\'\\"\'"}'))
    hostile = RequestFacts("GET", "http://example.com/<script>alert(1)</script>?q=\"x\"&y", "example.com", 80,
                           "/<script>alert(1)</script>?q=\"x\"&y", "127.0.0.1", "c3")
    for facts, target in (
        (hostile, "example.com:80/&lt;script&gt;alert(1)&lt;/script&gt;?q=&quot;x&quot;&amp;y"),
        (replace(CONNECT, target="<img src=x onerror=alert(1)>:443"), "&lt;img src=x onerror=alert(1)&gt;:443"),
    ):
        out, _ = proxy.engine.rewrite(Answer(407, (), ""), proxy.ask(facts=facts), facts)
        assert f"<p>Requested: {target}</p>" in out.body
        assert "<script>" not in out.body and "<img" not in out.body and "<b>" not in out.body
        assert "<title>&lt;b&gt;Sign in&lt;/b&gt;</title>" in out.body
        assert 'href="http://x/?a=1&amp;b=&#x27;&quot;&#x27;"' in out.body


def test_pacer_every_and_seed_are_repeatable():
    pacer = Pacer(Trigger(every=3))
    assert [pacer.fires() for _ in range(6)] == [False, False, True, False, False, True]
    first = Pacer(Trigger(probability=0.5, seed=7))
    second = Pacer(Trigger(probability=0.5, seed=7))
    runs = [first.fires() for _ in range(20)]
    assert runs == [second.fires() for _ in range(20)]
    assert 0 < sum(runs) < 20


def test_no_faults_is_a_pass_through(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nusers: {alice: pw}\n")
    proxy = Proxy(path)
    assert not proxy.engine.active
    decision = proxy.ask("alice")
    assert decision.fired == () and decision.delay == 0 and not decision.kill


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("unquoted_realm", ['Basic realm=Corp Proxy, charset="UTF-8"']),
        ("unterminated_quote", ['Basic realm="Corp Proxy, charset="UTF-8"']),
        ("unknown_scheme", ['X-Corp-SSO realm="Corp Proxy"']),
        ("garbage", ['Basic realm=="CORP";;, ,=,"']),
        ("empty", [""]),
    ],
)
def test_challenge_malformed_kinds(tmp_path, kind, expected):
    proxy = Proxy(write(tmp_path, f"- challenge_malformed: {{kind: {kind}}}", 'realm: "Corp Proxy"\n'))
    answer = Answer(407, (("Proxy-Authenticate", 'Basic realm="Corp Proxy", charset="UTF-8"'),), "body")
    out, fired = proxy.engine.rewrite(answer, proxy.ask(), PLAIN)
    assert [v for k, v in out.headers if k == "Proxy-Authenticate"] == expected
    assert fired == (Fired("challenge_malformed", f"challenge malformed ({kind.replace('_', ' ')})"),)


@pytest.mark.parametrize(
    ("at", "refused", "accepted", "connect"),  # no credentials, valid ones, a CONNECT with valid ones
    [
        ("request", {"kill": True}, {"kill": True}, {"kill": True}),
        ("challenge", {"kill": True}, {}, {}),
        ("success", {}, {"kill": True}, {"kill": True}),
        ("response", {}, {"kill_response": True}, {}),
        ("after_connect", {}, {}, {"tunnel": True}),
    ],
)
def test_drop_points(tmp_path, at, refused, accepted, connect):
    def effects(decision, engine) -> dict:
        out = {name: True for name in ("kill", "kill_response") if getattr(decision, name)}
        if engine.tunnel_request("c2") is not None:
            out["tunnel"] = True
        return out

    proxy = Proxy(write(tmp_path, f"- drop: {{at: {at}}}"))
    assert effects(proxy.ask(), proxy.engine) == refused
    assert effects(proxy.ask("alice"), proxy.engine) == accepted
    assert effects(proxy.ask("alice", facts=CONNECT), proxy.engine) == connect


@pytest.mark.parametrize(
    ("unquoted", "expected"),
    [
        (True, 'Digest realm=a\\"b, nonce="n", algorithm=MD5, Basic realm=a\\"b'),
        (False, 'Digest realm="a\\"b, nonce="n", algorithm=MD5, Basic realm="a\\"b'),
    ],
)
def test_realms_are_found_by_the_auth_param_parser(unquoted, expected):
    """Every realm of every challenge, escapes kept as written; other params untouched; junk left as it is."""
    value = 'Digest realm="a\\"b", nonce="n", algorithm=MD5, Basic REALM="a\\"b"'
    assert rewrite_realms(value, unquoted) == expected
    assert rewrite_realms('Basic realm="unterminated', unquoted) == 'Basic realm="unterminated'
