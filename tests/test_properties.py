"""Property-based tests (hypothesis) of every parser and generator (Basic, auth-params, Via, Proxy-Status,
NTLM tokens, htpasswd, rules, the scenario loader with faults): any input gives a result or the
project's own error, never another exception; generators round-trip through their parsers.

``make test`` runs ``HYPOTHESIS_EXAMPLES`` (default 200) examples per property; ``make fuzz`` runs
the same properties much longer (``FUZZ_EXAMPLES``, default 20000).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import ipaddress
import json
import os
import re
import string
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mitm407.core.credentials import parse_htpasswd
from mitm407.core.facts import RequestFacts
from mitm407.core.problems import Problems, ScenarioError
from mitm407.core.results import Result
from mitm407.core.rules import Match, client_in, compile_hosts
from mitm407.faults.registry import FAULTS
from mitm407.gate.authorizer import Action, Authorizer
from mitm407.hoplog import attribution as hops
from mitm407.scenario.load import Scenario, parse_scenario
from mitm407.schemes import ntlm_acceptor
from mitm407.schemes.basic import build_basic_challenge
from mitm407.wire import authparams
from mitm407.wire.authparams import split_authorization
from mitm407.wire.basic import BasicCredentialsError, parse_basic_credentials
from mitm407.wire.terminal import printable

try:  # the fault engine (issue 7), when this branch has it
    from mitm407.faults.engine import FaultEngine
except ImportError:
    FaultEngine = None  # type: ignore[assignment,misc]

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "200"))
fuzz = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
BASE = Path(__file__).resolve().parent / "no-such-folder"  # file:/htpasswd paths in generated scenarios resolve here

# text without lone surrogates: what a header value decoded by mitmproxy can hold, minus surrogateescape
texts = st.text(st.characters(exclude_categories=("Cs",)))
FACTS = RequestFacts("GET", "http://x/", "x", 80, "/", "127.0.0.1", "c1")


# -- Basic ----------------------------------------------------------------------------------


@fuzz
@given(user=texts.filter(lambda u: ":" not in u), password=texts)
def test_basic_round_trip(user, password):
    """RFC 7617: base64(user ":" password) in UTF-8 decodes to exactly what was encoded."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert parse_basic_credentials(token) == (user, password)


@fuzz
@given(raw=st.binary())
def test_basic_any_bytes(raw):
    """Any bytes: the split of their UTF-8 (else ISO-8859-1) text at the first colon, or our error."""
    token = base64.b64encode(raw).decode()
    try:
        user, password = parse_basic_credentials(token)
    except BasicCredentialsError:
        assert b":" not in raw or len(token) > 16 * 1024
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("iso-8859-1")
    assert f"{user}:{password}" == text and ":" not in user


BASIC_ERRORS = {
    "empty Basic credentials",
    "Basic credentials too long (N characters)",
    "Basic credentials are not valid base64",
    "Basic credentials have no ':' between user and password",
}


@fuzz
@given(token=st.text())
@example(token="YQ==YQ==")
@example(token="\udcff\x00,,,")
@example(token="password")  # a word of the error text itself: not an echo
def test_basic_any_token(token):
    try:
        user, password = parse_basic_credentials(token)
    except BasicCredentialsError as e:
        # the error never echoes the credentials: its text is one of a few fixed sentences
        assert re.sub(r"\(\d+ characters\)", "(N characters)", str(e)) in BASIC_ERRORS
        return
    assert ":" not in user


@fuzz
@given(realm=st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs", "Cc"))), charset=st.booleans())
def test_basic_challenge_round_trip(realm, charset):
    """The realm comes back out of the quoted-string (RFC 9110 §5.6.4) unchanged."""
    challenge = build_basic_challenge(realm, charset)
    m = re.fullmatch(r'Basic realm="((?:[^"\\]|\\.)*)"(, charset="UTF-8")?', challenge, re.DOTALL)
    assert m is not None
    assert re.sub(r"\\(.)", r"\1", m.group(1), flags=re.DOTALL) == realm
    assert bool(m.group(2)) == charset


# -- header splitting and log safety ----------------------------------------------------------


@fuzz
@given(value=st.text())
@example(value="   ")
@example(value="Basic" + " " * 5000 + "abc")
def test_split_authorization(value):
    token, rest = split_authorization(value)
    assert " " not in token and token == token.lower()
    assert rest == rest.strip()
    if value.strip():
        assert token
    scheme, _, credentials = value.strip().partition(" ")
    assert (token, rest) == (scheme.lower(), credentials.strip())


@fuzz
@given(text=st.text(), limit=st.integers(0, 100))
def test_printable_is_safe_for_one_log_line(text, limit):
    shown = printable(text, limit)
    assert all(ch.isprintable() for ch in shown)
    assert len(shown) <= limit + 3


@fuzz
@given(values=st.lists(st.text(), max_size=5))
@example(values=["Basic " + "A" * 70000])
@example(values=["Basic \udcff\udcfe", "\x00Basic YQ=="])
@example(values=["Negotiate abc", "Basic " + base64.b64encode(b"alice:pw").decode()])
def test_authorizer_any_headers(values):
    """Whatever the headers: a verdict whose reason fits on one log line and echoes no credentials."""
    verdict = AUTHORIZER.evaluate(FACTS, values, "Proxy-Authorization")
    assert verdict.action in (Action.FORWARD, Action.CHALLENGE)
    assert "\n" not in verdict.auth.reason and "\r" not in verdict.auth.reason
    for value in values:
        _, credentials = split_authorization(value)
        if len(credentials) >= 8:
            assert credentials not in verdict.auth.reason
    # the first header of an offered scheme decides
    first = next((c for t, c in map(split_authorization, values) if t == "basic"), None)
    assert (verdict.auth.result is Result.OK) == (first is not None and decodes_to(first, ("alice", "pw")))


def decodes_to(credentials: str, expected: tuple[str, str]) -> bool:
    try:
        return parse_basic_credentials(credentials) == expected
    except BasicCredentialsError:
        return False


AUTHORIZER = Authorizer(parse_scenario("version: 1\nusers: {alice: pw}\n", "<fuzz>", BASE, {}))


# -- htpasswd -------------------------------------------------------------------------------

BCRYPT = "$2y$10$" + "a" * 53
HASHES = st.sampled_from([BCRYPT, "$apr1$salt1234$" + "b" * 22, "{SHA}" + "c" * 28])
LINE_BREAKS = ":\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # str.splitlines() splits on each
names = st.text(st.characters(exclude_categories=("Cs",), exclude_characters=LINE_BREAKS), min_size=1).filter(
    lambda n: not n.lstrip().startswith("#") and n.strip()
)


@fuzz
@given(text=st.text())
def test_htpasswd_any_text(text):
    problems = Problems()
    users = parse_htpasswd(text, "h", problems)
    for problem in problems.items:
        assert problem.line >= 1 and problem.col >= 1
        assert "$2" not in problem.message and "{SHA}" not in problem.message  # hashes are never shown
    assert all(":" not in u.name for u in users)


@fuzz
@given(entries=st.dictionaries(names, HASHES, max_size=20))
def test_htpasswd_round_trip(entries):
    text = "".join(f"{name}:{value}\n" for name, value in entries.items())
    problems = Problems()
    users = parse_htpasswd(text, "h", problems)
    assert problems.items == []
    assert {u.name: u.secret.value for u in users} == entries


# -- rules ----------------------------------------------------------------------------------

hosts = st.from_regex(r"[a-z0-9*?.\-\[\]!]{1,20}", fullmatch=True)
ips = st.one_of(st.ip_addresses().map(str), st.text(max_size=20))
networks = st.builds(lambda ip, bits: ipaddress.ip_network(f"{ip}/{bits % (ip.max_prefixlen + 1)}", strict=False),
                     st.ip_addresses(), st.integers(0, 128))


@fuzz
@given(globs=st.lists(hosts, min_size=1, max_size=4), host=st.text(string.ascii_letters + ".-*0", max_size=30))
def test_host_globs_agree_with_fnmatch(globs, host):
    """One compiled regex for all globs matches exactly when fnmatch says one glob does."""
    expected = any(fnmatch.fnmatchcase(host.lower(), g.lower()) for g in globs)
    assert bool(compile_hosts(tuple(globs)).match(host)) == expected


@fuzz
@given(ip=ips, nets=st.lists(networks, min_size=1, max_size=3))
def test_client_networks(ip, nets):
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        assert client_in(ip, tuple(nets)) is False
        return
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    assert client_in(ip, tuple(nets)) == any(address in n for n in nets)


@fuzz
@given(
    prefixes=st.lists(st.text(min_size=1).map(lambda p: "/" + p), max_size=3),
    methods=st.lists(st.sampled_from(["GET", "POST", "CONNECT", "PUT"]), max_size=2),
    path=st.text(),
    method=st.sampled_from(["GET", "POST", "CONNECT", "PUT"]),
    ip=ips,
)
def test_match_is_the_conjunction_of_its_conditions(prefixes, methods, path, method, ip):
    match = Match(path_prefixes=tuple(prefixes) or None, methods=frozenset(methods) or None)
    facts = RequestFacts(method, path, "h", 80, path, ip, "c", method == "CONNECT")
    expected = (not prefixes or path.startswith(tuple(prefixes))) and (not methods or method in methods)
    assert match.matches(facts) == expected


# -- the scenario loader ------------------------------------------------------------------------

KEYS = ["version", "name", "description", "realm", "login_hint", "users", "htpasswd", "schemes", "basic",
        "rules", "default", "cache", "match", "auth", "host", "port", "path", "path_regex", "method", "connect",
        "client", "password", "domain", "ttl", "max_entries", "charset", "faults", *sorted(FAULTS)]
TAGS = ["!!int", "!!float", "!!bool", "!!binary", "!!timestamp", "!!null", "!!str", "!!set", "!!omap",
        "!!python/object:os.system", "!custom", "!!merge"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=30),
    st.sampled_from(["basic", "required", "none", "deny", "env:NOPE", "file:nope", "*.x", "10.0.0.0/8", "[", "1"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), children, max_size=6),
    ),
    max_leaves=25,
)


def check_loader(text: str) -> None:
    try:
        scenario = parse_scenario(text, "fuzz.yaml", BASE, env={})
    except ScenarioError as e:
        for problem in e.problems:
            assert problem.file and problem.line >= 1 and problem.col >= 1
        return
    assert isinstance(scenario, Scenario)
    Authorizer(scenario).evaluate(FACTS, [], "Proxy-Authorization")  # a loaded scenario is usable
    if FaultEngine is not None:
        FaultEngine(scenario)


# faults (issue 7): any fault name with any settings, at the top level and in rules
FAULT_KEYS = ["at", "cycle", "every", "failures", "forward", "header", "kind", "location", "message", "ms", "on",
              "passwords", "probability", "requests", "scheme", "seconds", "seed", "title", "user", "value"]
fault_settings = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(FAULT_KEYS), st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=4),
    scalars,
)
fault_lists = st.lists(st.builds(lambda name, value: {name: value}, st.sampled_from(sorted(FAULTS) or ["x"]),
                                 fault_settings), max_size=4)


@fuzz
@given(faults=fault_lists, in_rule=st.booleans())
def test_loader_any_faults(faults, in_rule):
    doc: dict = {"version": 1, "users": {"alice": "pw"}}
    if in_rule:
        doc["rules"] = [{"match": {"path": "/x"}, "auth": "required", "faults": faults}]
    else:
        doc["faults"] = faults
    check_loader(yaml.safe_dump(doc, allow_unicode=True))


@fuzz
@given(doc=documents)
def test_loader_any_document(doc):
    check_loader(yaml.safe_dump(doc, allow_unicode=True))


@fuzz
@given(text=st.text())
@example(text="version: !!int abc\n")
@example(text="version: !!python/object:os.system 1\n")
@example(text="a: &x [*x]\n")
@example(text="\x00")
def test_loader_any_text(text):
    check_loader(text)


VALID = "version: 1\nrealm: R\nusers: {alice: pw}\nrules:\n  - match: {host: '*.x', port: 80}\n    auth: none\n"


@fuzz
@given(position=st.integers(0, len(VALID)), insert=st.one_of(st.text(max_size=8), st.sampled_from(TAGS)),
       drop=st.integers(0, 4))
def test_loader_mutated_scenario(position, insert, drop):
    check_loader(VALID[:position] + insert + " " + VALID[position + drop:])


@fuzz
@given(key=st.sampled_from(["version", "realm", "default", "cache", "rules", "users", "schemes", "htpasswd"]),
       tag=st.sampled_from(TAGS), value=st.text(max_size=10))
def test_loader_tagged_values(key, tag, value):
    check_loader(f"version: 1\nusers: {{a: b}}\n{key}: {tag} {json.dumps(value)}\n")


# -- auth-params (Digest), Via and Proxy-Status (hop log), NTLM tokens ----------------------------------

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(TCHAR, min_size=1, max_size=12)
printable_ascii = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@fuzz
@given(value=st.one_of(st.text(), st.lists(st.text(), max_size=3)))
@example(value="Digest " + 'a="b",' * 2000)
@example(value='Digest realm="x\\')
def test_auth_params_any_text(value):
    for parse in (authparams.parse_challenges, authparams.parse_auth_params, authparams.parse_credentials):
        if parse is not authparams.parse_challenges and not isinstance(value, str):
            continue
        with contextlib.suppress(authparams.AuthParamError):
            parse(value)


@fuzz
@given(scheme=tokens, params=st.dictionaries(tokens, printable_ascii, max_size=6))
def test_challenge_round_trip(scheme, params):
    """format_challenge(format_param(...)) parses back to the same scheme and parameters."""
    params = {k: v for k, v in params.items() if k.lower() == k}  # names are compared lower-cased
    formatted = authparams.format_challenge(scheme, [authparams.format_param(k, v) for k, v in params.items()])
    parsed = authparams.parse_challenges(formatted)
    assert [(c.scheme, c.params) for c in parsed] == [(scheme, params)]


@fuzz
@given(values=st.lists(st.text(), max_size=4))
def test_via_and_proxy_status_any_text(values):
    assert all(isinstance(e.received_by, str) for e in hops.parse_via(values))
    assert all(isinstance(e.hop, str) for e in hops.parse_proxy_status(values))


@fuzz
@given(hop=st.text(min_size=1, max_size=60), others=st.lists(st.sampled_from(["1.0 squid", "1.1 e (x)"]), max_size=2))
def test_via_round_trip(hop, others):
    entries = hops.parse_via([", ".join([*others, hops.build_via(hop)])])
    assert entries[-1] == hops.ViaEntry("1.1", hops.via_pseudonym(hop), None)
    assert len(entries) == len(others) + 1


@fuzz
@given(
    hop=printable_ascii.filter(str.strip),
    error=st.sampled_from([None, "connection_refused", "destination_not_found"]),
    details=st.one_of(st.none(), printable_ascii.filter(bool)),
    next_hop=st.one_of(st.none(), printable_ascii.filter(bool)),
)
def test_proxy_status_round_trip(hop, error, details, next_hop):
    [entry] = hops.parse_proxy_status([hops.build_proxy_status(hop, error, details, next_hop)])
    assert (entry.hop, entry.error) == (hop, error)
    assert entry.param("details") == details and entry.param("next-hop") == next_hop


@fuzz
@given(text=st.text(), raw=st.binary(max_size=64))
def test_ntlm_tokens(text, raw):
    for value in (text, base64.b64encode(raw).decode()):
        try:
            token = ntlm_acceptor.decode_token(value, "NTLM")
        except ntlm_acceptor.TokenError:
            continue
        with contextlib.suppress(ntlm_acceptor.TokenError):
            assert ntlm_acceptor.message_type(token) >= 0
