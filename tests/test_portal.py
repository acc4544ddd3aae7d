"""The login portal, pure: the gate with ``portal:`` and the ``Portal``'s form check (no mitmproxy).

The clock is injected: sign-ins expire without sleeping.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import bcrypt
import pytest

from mitm407.core.facts import RequestFacts
from mitm407.core.problems import ScenarioError
from mitm407.core.results import Result
from mitm407.gate.gate import Gate, GateRequest, Kind
from mitm407.gate.portal import (
    HANDOFF_PARAM,
    PORTAL_HOST,
    LoginForm,
    Sessions,
    is_safe_url,
    parse_login_form,
    redacted_form,
    without_handoff,
)
from mitm407.scenario.load import parse_scenario
from test_gate import basic

PASSWORD = "s3cret-Pw!"
URL = "http://origin.test/page?q=1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def facts(url: str = URL, method: str = "GET", ip: str = "10.0.0.5") -> RequestFacts:
    if method == "CONNECT":
        return RequestFacts("CONNECT", "origin.test:443", "origin.test", 443, "", ip, "c1", True)
    parts = urlsplit(url)
    path = parts.path + ("?" + parts.query if parts.query else "")
    return RequestFacts(method, url, parts.hostname or "", parts.port or 80, path, ip, "c1")


def login_facts(ip: str = "10.0.0.5") -> RequestFacts:
    return facts(f"http://{PORTAL_HOST}/mitm407/login", "POST", ip)


def make(tmp_path: Path, portal: str = "{ttl: 60}", extra: str = "", users: str = f"{{alice: '{PASSWORD}'}}",
         clock: Clock | None = None) -> tuple[Gate, Clock]:
    clock = clock or Clock()
    text = f"version: 1\nusers: {users}\nportal: {portal}\n{extra}"
    return Gate(parse_scenario(text, str(tmp_path / "s.yaml"), tmp_path), clock), clock


def ask(gate: Gate, f: RequestFacts | None = None, *credentials: str, token: str = ""):
    return gate.decide(GateRequest(f or facts(), list(credentials), portal_token=token))


def redirected_form(gate: Gate, url: str = URL) -> dict[str, str]:
    """The redirect's Location query: next and sig, as the form carries them."""
    out = ask(gate, facts(url))
    assert out.kind is Kind.ANSWER and out.answer.status == 302, out
    location = dict(out.answer.headers)["Location"]
    assert location.startswith(f"http://{PORTAL_HOST}/mitm407/login?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def sign_in(gate: Gate, password: str = PASSWORD, user: str = "alice", ip: str = "10.0.0.5", url: str = URL):
    """Post the form as a browser redirected from ``url`` would (next and sig as the redirect gave them)."""
    return gate.portal.login(login_facts(ip), LoginForm(user, password, url, gate.portal.sign(url)), "hop")


# -- the scenario key --------------------------------------------------------------------------

def test_portal_key_is_validated_with_file_line_col(tmp_path):
    with pytest.raises(ScenarioError) as e:
        make(tmp_path, "{ttl: 0, by: browser, status: 200, color: red}")
    text = str(e.value)
    assert "s.yaml:3:15: 'ttl' must be at least" in text
    assert "unknown value 'browser' for 'by'" in text
    assert "'status' must be one of 302, 303, 307, got 200" in text
    assert "unknown key 'color' in 'portal'" in text


def test_no_portal_key_means_no_portal(tmp_path):
    scenario = parse_scenario("version: 1\nusers: {a: b}\n", str(tmp_path / "s.yaml"), tmp_path)
    gate = Gate(scenario)
    assert gate.portal is None
    assert ask(gate).answer.status == 407


# -- the redirect ---------------------------------------------------------------------------------

def test_unauthenticated_request_is_redirected_with_the_login_page_as_body(tmp_path):
    gate, _ = make(tmp_path)
    out = ask(gate)
    assert out.kind is Kind.ANSWER and out.answer.status == 302 and out.answer.reason_phrase == "Found"
    headers = dict(out.answer.headers)
    assert headers["Content-Type"].startswith("text/html")
    assert '<form id="mitm407-login" method="post"' in out.answer.body  # what a non-browser client reads
    assert out.auth.scheme == "portal" and out.auth.result is Result.MISSING
    assert redirected_form(gate)["next"] == URL


def test_redirect_status_is_configurable(tmp_path):
    gate, _ = make(tmp_path, "{status: 307}")
    assert ask(gate).answer.status == 307


def test_the_next_url_is_escaped_on_the_page(tmp_path):
    gate, _ = make(tmp_path)
    evil = 'http://origin.test/"><script>alert(1)</script>'
    body = ask(gate, facts(evil)).answer.body
    assert "<script>alert(1)" not in body
    assert "&lt;script&gt;" in body or "next" not in body


def test_connect_is_not_redirected_but_told_where_to_sign_in(tmp_path):
    gate, _ = make(tmp_path)
    out = ask(gate, facts(method="CONNECT"))
    assert out.answer.status == 407
    assert f"http://{PORTAL_HOST}/mitm407/login" in out.answer.body


def test_deny_and_bypass_rules_apply_before_and_after_signing_in(tmp_path):
    rules = "rules:\n  - {match: {path: [/secret]}, auth: deny}\n  - {match: {path: [/open]}, auth: none}\n"
    gate, _ = make(tmp_path, extra=rules)
    assert ask(gate, facts("http://origin.test/open")).kind is Kind.FORWARD
    assert ask(gate, facts("http://origin.test/secret")).answer.status == 403
    assert sign_in(gate).answer.status == 303
    assert ask(gate, facts("http://origin.test/secret")).answer.status == 403  # still denied
    assert ask(gate, facts("http://origin.test/open")).auth.result is Result.BYPASS


# -- the form -------------------------------------------------------------------------------------

def test_success_trusts_the_client_ip_for_ttl_and_redirects_to_next(tmp_path):
    gate, clock = make(tmp_path, "{ttl: 60, by: ip}")
    out = sign_in(gate)
    assert out.answer is not None and out.answer.status == 303
    assert dict(out.answer.headers)["Location"] == URL
    assert out.auth.result is Result.OK and out.auth.scheme == "portal" and out.auth.user == "alice"
    later = ask(gate)
    assert later.kind is Kind.FORWARD and later.auth.scheme == "portal" and later.auth.user == "alice"
    assert "client IP 10.0.0.5" in later.auth.reason
    assert ask(gate, facts(ip="10.0.0.6")).answer.status == 302  # another client is not signed in
    assert ask(gate, facts(method="CONNECT")).opens_tunnel  # HTTPS passes once the IP is signed in
    clock.now += 61
    assert ask(gate).answer.status == 302  # expired: the form again


def test_wrong_password_shows_the_form_with_an_escaped_error_and_trusts_nobody(tmp_path):
    gate, _ = make(tmp_path, users="{'<b>eve</b>': right}")
    out = sign_in(gate, "wrong", user="<b>eve</b>")
    assert out.answer.status == 200 and out.auth.result is Result.BAD_CREDENTIALS
    assert "Sign-in failed" in out.answer.body and "&lt;b&gt;eve&lt;/b&gt;" in out.answer.body
    assert "<b>eve</b>" not in out.answer.body and "wrong" not in out.answer.body.replace("wrong password", "")
    assert ask(gate).answer.status == 302


def test_the_password_appears_nowhere(tmp_path):
    gate, _ = make(tmp_path)
    for password in (PASSWORD, "not-" + PASSWORD):
        out = sign_in(gate, password)
        assert password not in repr(out) and password not in out.answer.body
    assert PASSWORD not in repr(LoginForm("alice", PASSWORD))


def test_next_is_never_an_open_redirect(tmp_path):
    gate, _ = make(tmp_path)
    sig = redirected_form(gate)["sig"]
    for next_url in ("http://evil.example/", "https://evil.example/", "//evil.example/", "javascript:alert(1)"):
        out = gate.portal.login(login_facts(), LoginForm("alice", PASSWORD, next_url, sig), "hop")
        assert out.answer.status == 200, next_url  # signed in, but no redirect to a URL nobody was sent from
        assert "Location" not in dict(out.answer.headers)
        assert "evil.example" not in out.answer.body


def test_missing_fields_are_refused_unchecked(tmp_path):
    gate, _ = make(tmp_path)
    out = gate.portal.login(login_facts(), LoginForm("alice", ""), "hop")
    assert out.auth.result is Result.MISSING and out.answer.status == 200


def test_a_user_name_with_a_colon_is_refused_not_split(tmp_path):
    """``alice:x`` / ``y`` must not sign in as alice (whose password is ``x:y``), as a Basic token would split it."""
    gate, _ = make(tmp_path, users="{alice: 'x:y'}")
    out = sign_in(gate, "y", user="alice:x")
    assert out.auth.result is Result.MALFORMED and out.answer.status == 200 and "':'" in out.auth.reason
    assert sign_in(gate, "x:y").auth.result is Result.OK  # the real user and password still sign in


def test_lockout_fault_applies_to_the_form(tmp_path):
    gate, _ = make(tmp_path, extra="faults:\n  - lockout: {failures: 2, seconds: 30, status: 403}\n")
    sign_in(gate, "bad1")
    sign_in(gate, "bad2")
    out = sign_in(gate)  # the right password, but locked
    assert out.answer.status == 403 and out.auth.result is Result.DENIED and "locked out" in out.answer.body
    assert [f.name for f in out.fired] == ["lockout"]
    assert ask(gate).answer.status == 302


def test_always_refuse_fault_applies_to_the_form(tmp_path):
    gate, _ = make(tmp_path, extra="faults:\n  - always_407\n")
    out = sign_in(gate)
    assert out.auth.result is not Result.OK and ask(gate).answer.status == 302


def test_basic_credentials_still_work_beside_the_portal(tmp_path):
    gate, _ = make(tmp_path)
    out = ask(gate, facts(), basic("alice", PASSWORD))
    assert out.kind is Kind.FORWARD and out.auth.scheme == "basic" and out.strip_credentials


def test_bcrypt_users_are_checked_off_the_loop(tmp_path):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    (tmp_path / "h.htpasswd").write_text(f"alice:{hashed}\n")
    gate = Gate(parse_scenario("version: 1\nhtpasswd: h.htpasswd\nportal: {}\n", str(tmp_path / "s.yaml"), tmp_path))
    query = redirected_form(gate)
    form = LoginForm("alice", PASSWORD, query["next"], query["sig"])
    first = gate.portal.login(login_facts(), form, "hop")
    assert first.slow_check is not None
    check = first.slow_check
    check.scheme.remember(check.credentials, check.scheme.slow_check(check.credentials))  # as the worker does
    assert gate.portal.login(login_facts(), form, "hop").answer.status == 303


# -- by cookie --------------------------------------------------------------------------------------

def test_by_cookie_hands_the_cookie_to_the_origin_once(tmp_path):
    gate, clock = make(tmp_path, "{ttl: 60, by: cookie}")
    out = sign_in(gate)
    headers = dict(out.answer.headers)
    location = headers["Location"]
    assert location.startswith(URL + "&" + HANDOFF_PARAM + "=")
    assert ask(gate).answer.status == 302  # the IP is not trusted by cookie
    answer, auth = gate.portal.handoff(location)
    cookie = dict(answer.headers)["Set-Cookie"]
    assert dict(answer.headers)["Location"] == URL and auth.user == "alice"
    token = cookie.split(";")[0].split("=", 1)[1]
    assert ask(gate, token=token).kind is Kind.FORWARD
    assert ask(gate, token="forged").answer.status == 302
    assert gate.portal.handoff(location) is None  # single use
    clock.now += 61
    assert ask(gate, token=token).answer.status == 302


# -- helpers ----------------------------------------------------------------------------------------

def test_form_parsing_and_url_helpers():
    form = parse_login_form(b"username=a%20b&password=p%26w&next=http%3A%2F%2Fx%2F&sig=s&username=second")
    assert (form.username, form.password, form.next_url, form.sig) == ("a b", "p&w", "http://x/", "s")
    assert is_safe_url("http://x.test/a?b=c") and not is_safe_url("http://x.test/a b")
    assert not is_safe_url("ftp://x.test/") and not is_safe_url("http:///nohost")
    assert without_handoff(f"http://x/?a=1&{HANDOFF_PARAM}=c") == "http://x/?a=1"
    assert redacted_form(b"username=a&password=p%26w&next=n") == b"username=a&password=REDACTED&next=n"
    flood = b"&".join(b"f%d=x" % i for i in range(40)) + b"&password=p"
    assert parse_login_form(flood).password == "" and redacted_form(flood) == b""  # not our form: nothing kept


def test_sessions_are_bounded_and_expire():
    clock = Clock()
    sessions = Sessions(clock, limit=2)
    for key in "abc":
        sessions.grant(key, "u", 10)
    assert len(sessions) == 2 and sessions.get("a") is None
    clock.now += 11
    assert sessions.get("b") is None


def test_rotation_reaches_the_form(tmp_path):
    """Fault 'rotate': the form accepts the password in force now, not the one of the scenario file."""
    gate, clock = make(tmp_path, users="{svc: rot-1}",
                       extra="faults:\n  - rotate: {user: svc, passwords: [rot-1, rot-2], period: 60}\n")
    assert sign_in(gate, "rot-1", user="svc").auth.result is Result.OK
    clock.now += 61
    assert sign_in(gate, "rot-1", user="svc", ip="10.0.0.7").auth.result is Result.BAD_CREDENTIALS
    assert sign_in(gate, "rot-2", user="svc", ip="10.0.0.7").auth.result is Result.OK


def test_expire_after_reaches_the_form(tmp_path):
    gate, _ = make(tmp_path, extra="faults:\n  - expire_after: {requests: 1}\n")
    assert sign_in(gate).auth.result is Result.OK
    refused = sign_in(gate, ip="10.0.0.8")
    assert refused.auth.result is not Result.OK and "Sign-in failed" in refused.answer.body


def test_the_control_apis_lock_applies_to_the_form(tmp_path):
    gate, _ = make(tmp_path)
    gate.overrides.lock("alice")
    assert sign_in(gate).auth.result is not Result.OK and ask(gate).answer.status == 302
    gate.overrides.unlock("alice")
    assert sign_in(gate).auth.result is Result.OK


def test_the_control_api_signs_portal_users_out(tmp_path):
    """/expire and /lock reach sign-ins too: the next request is redirected to the form."""
    gate, _ = make(tmp_path)
    sign_in(gate)
    assert ask(gate).kind is Kind.FORWARD
    assert gate.overrides.expire_all() == ["alice"]
    assert ask(gate).answer.status == 302
    sign_in(gate)
    assert ask(gate).kind is Kind.FORWARD
    gate.overrides.lock("alice")
    assert ask(gate).answer.status == 302
