"""From captured answers to a scenario that replays them: ``Observation``s in, YAML text out.

Pure: the capture addon, ``capture --from FILE`` and the tests feed it
observations. What it infers:

- the refusal shape (``response:``): status line, every header in wire order
  with the ``Proxy-Authenticate`` headers at their position, ``Date`` and
  ``Content-Length`` as placeholders, the body as a template (request URL,
  authority, host and dates become ``{url}``/``{authority}``/``{host}``/
  ``{date}``), and whether the proxy closed the connection;
- each challenge: a scheme mitm407 implements (Basic; Digest/NTLM/Negotiate
  when this mitm407 has them) becomes that scheme with its parameters in the
  scheme's section, so it generates fresh nonces; anything else is kept
  verbatim with nonces replaced by ``{nonce}`` (fresh per answer);
- ``connect:`` and ``bad_credentials:`` overrides where CONNECT or wrong
  credentials were answered differently, rules for requests that passed
  without credentials, and notes for what a scenario cannot express yet.

The text is checked with ``parse_scenario`` before it is returned, so a
generated file always passes ``mitm407 check``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mitm407.capture.observe import Observation, read_challenge
from mitm407.core.problems import ScenarioError
from mitm407.core.shape import CHALLENGES_MARKER
from mitm407.faults import registry as faults_module
from mitm407.scenario.load import parse_scenario
from mitm407.schemes import SCHEME_NAMES
from mitm407.schemes.basic import build_basic_challenge
from mitm407.wire.authparams import Challenge, is_token
from mitm407.wire.terminal import escape_controls

REPLAY_PASSWORD = "mitm407-replay"  # the real passwords are never recorded
DEFAULT_USER = "user"
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
HTTP_DATE_RE = re.compile(rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (?:{_MONTHS}) \d{{4}} \d\d:\d\d:\d\d GMT")
_NONCE_PARAM_RE = re.compile(r'(?i)\b((?:s|c)?nonce\s*=\s*)("[^"]*"|[^,\s]*)')
_TOKEN68_SCHEMES = ("ntlm", "negotiate", "kerberos")


def one_line(text: str) -> str:
    """A header value, reason or challenge as a scenario can send it: obs-folds and stray CR/LF to spaces.

    mitmproxy joins a folded header line with ``\\r\\n ``; a scenario refuses line
    breaks there (they would split the replayed header). Other characters are kept,
    the YAML emitter escapes them.
    """
    return text.replace("\r", " ").replace("\n", " ") if "\r" in text or "\n" in text else text


class CaptureError(ValueError):
    """Nothing replayable was captured, or the inference produced an invalid scenario."""


@dataclass
class Schemes:
    """What the challenges of one answer map to."""

    items: list[Any] = field(default_factory=list)  # scheme names and {value: ...}
    names: list[str] = field(default_factory=list)  # schemes: in challenge order
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    realms: list[str] = field(default_factory=list)


def map_challenges(values: Sequence[str], available: Sequence[str]) -> Schemes:
    """Each ``Proxy-Authenticate`` value to a mitm407 scheme, or verbatim with nonces generated."""
    out = Schemes()
    for value in values:
        challenge = read_challenge(value)
        if challenge is None:  # not one well-formed challenge: replayed as received
            out.items.append({"value": one_line(generated_value(value, None))})
            continue
        name = challenge.scheme.lower()
        if name in available and not challenge.token68:
            realm = challenge.param("realm")  # the scenario's realm is the first scheme's
            if realm is not None and realm not in out.realms:
                out.realms.append(realm)
            exact = _map_scheme(name, challenge, value, out)
            if name not in out.names:  # the scheme verifies credentials even if its challenge is verbatim
                out.names.append(name)
            if exact:
                if name not in out.items:
                    out.items.append(name)
                continue
        out.items.append({"value": generated_value(value, challenge)})
    return out


def _map_scheme(name: str, challenge: Challenge, value: str, out: Schemes) -> bool:
    """Record a challenge's parameters in its scheme's section; False if the scheme would not send ``value``."""
    section = out.sections.setdefault(name, {})
    if name == "basic":  # e.g. an unquoted realm, or a second realm: replayed verbatim, byte for byte
        section["charset"] = challenge.param("charset") is not None
        return value.strip() == build_basic_challenge(out.realms[0] if out.realms else "", section["charset"])
    if name == "digest":
        # The scheme verifies; the challenge is replayed verbatim (parameter order, stale=, ...)
        # with the scheme's own fresh nonce in place of {nonce} (shape.py).
        section["charset"] = challenge.param("charset") is not None
        section["userhash"] = (challenge.param("userhash") or "").lower() == "true"
        algorithm = challenge.param("algorithm") or "MD5"
        section.setdefault("algorithms", [])
        if algorithm not in section["algorithms"]:
            section["algorithms"].append(algorithm)
        for qop in (q.strip() for q in (challenge.param("qop") or "").split(",")):
            if qop and qop not in section.setdefault("qop", []):
                section["qop"].append(qop)
        for key in ("opaque", "domain"):
            if challenge.param(key) is not None:
                section[key] = challenge.param(key)
        return False
    return not challenge.params  # NTLM, Negotiate: a bare scheme token


def generated_value(value: str, challenge: Challenge | None) -> str:
    """A challenge kept verbatim, except what a proxy generates afresh (nonces, handshake tokens)."""
    if challenge is not None and challenge.token68 and challenge.scheme.lower() in _TOKEN68_SCHEMES:
        return f"{challenge.scheme} {{nonce}}"
    return _NONCE_PARAM_RE.sub(lambda m: m.group(1) + ('"{nonce}"' if m.group(2).startswith('"') else "{nonce}"), value)


def header_template(headers: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """The answer's headers in order: challenges at their marker, Date/Content-Length as placeholders."""
    out: list[dict[str, str]] = []
    placed = False
    for name, raw in headers:
        if not is_token(name):  # a header a scenario cannot hold (nor HTTP send): not replayed
            continue
        lower, value = name.lower(), one_line(raw)
        if lower == "proxy-authenticate":
            if not placed:
                out.append({name: CHALLENGES_MARKER})
                placed = True
            continue
        if lower == "date":
            value = "{date}"
        elif lower in ("content-length", "transfer-encoding"):  # replayed with Content-Length
            name, value = ("Content-Length" if lower == "transfer-encoding" else name), "{content_length}"
        out.append({name: value})
    return out


def body_template(obs: Observation) -> str:
    """The body with what depends on the request or the time turned into placeholders."""
    text = obs.body
    text = text.replace(obs.url, "{url}")  # CONNECT: host:port
    text = text.replace(f"{obs.host}:{obs.port}", "{authority}")
    if len(obs.host) >= 4:
        text = text.replace(obs.host, "{host}")
    return HTTP_DATE_RE.sub("{date}", text)


def shape_of(obs: Observation, available: Sequence[str]) -> tuple[dict[str, Any], Schemes]:
    schemes = map_challenges(obs.challenges(), available)
    shape = {
        "status": obs.status,
        "reason": one_line(obs.reason),
        "challenges": schemes.items,
        "headers": header_template(obs.headers),
        "body": body_template(obs),
        "close": bool(obs.closed),
    }
    return shape, schemes


def override(shape: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in shape.items() if base.get(k) != v}


def _first(observations: Sequence[Observation], kind: str, with_credentials: bool) -> Observation | None:
    return next(
        (
            o
            for o in observations
            if o.kind == kind and o.refused and (o.credentials is not None) == with_credentials and not _handshake(o)
        ),
        None,
    )


def _handshake(obs: Observation) -> bool:
    """A connection-bound handshake leg (NTLM type 2): neither a first challenge nor a wrong password."""
    return obs.credentials in _TOKEN68_SCHEMES and any(
        (c := read_challenge(value)) is not None and c.token68 for value in obs.challenges()
    )


def infer_scenario(
    observations: Sequence[Observation],
    *,
    source: str,
    captured_at: str,
    available: Sequence[str] = SCHEME_NAMES,
) -> str:
    """The scenario YAML text; raises CaptureError when nothing was refused.

    Scheme sections and faults written by other parts of mitm407 may not accept
    what was inferred; then the capture is written conservatively (challenges
    verbatim, no faults) with a note, so the file always passes ``check``.
    """
    try:
        return _infer(observations, source, captured_at, available, [], faults_module.FAULTS)
    except ScenarioError as e:
        if tuple(available) == ("basic",) and not faults_module.FAULTS:
            raise CaptureError(f"the inferred scenario is invalid (a mitm407 bug):\n{e}") from None
        note = (
            f"this mitm407 could not express everything captured ({e.problems[0].message}): "
            "challenges are replayed verbatim and no fault is set"
        )
        try:
            return _infer(observations, source, captured_at, ("basic",), [note], {})
        except ScenarioError as e2:
            raise CaptureError(f"the inferred scenario is invalid (a mitm407 bug):\n{e2}") from None


def _infer(
    observations: Sequence[Observation],
    source: str,
    captured_at: str,
    available: Sequence[str],
    notes: list[str],
    faults: MappingABC[str, Any],
) -> str:
    plain, connect = _first(observations, "plain", False), _first(observations, "connect", False)
    first = plain or connect or _first(observations, "plain", True) or _first(observations, "connect", True)
    if first is None:
        raise CaptureError(
            f"no refusal (401/403/407) was captured in {len(observations)} answers: nothing to replay; "
            "send a request without credentials through the capture proxy"
        )
    base, found = shape_of(first, available)
    lockout: list[dict[str, Any]] = []
    response: dict[str, Any] = dict(base)
    if connect is not None and first is not connect:
        connect_shape, connect_found = shape_of(connect, available)
        _merge(found, connect_found)
        if diff := override(connect_shape, base):
            response["connect"] = diff
    bad = [o for o in observations if o.refused and o.credentials is not None and not _handshake(o)]
    if bad:
        bad_shape, bad_found = shape_of(bad[0], available)
        _merge(found, bad_found)
        if diff := override(bad_shape, base if bad[0].kind == "plain" or "connect" not in response else connect_shape):
            response["bad_credentials"] = diff
        changed = next((i for i, o in enumerate(bad) if o.status != bad[0].status), None)
        if changed:
            locked = bad[changed]
            if diff := override(shape_of(locked, available)[0], base):
                response["denied"] = diff  # the lockout's (or any denial's) answer
            if "lockout" in faults and locked.status == 403:  # issue 7's fault; validated below
                lockout = [{"lockout": {"failures": changed, "status": 403}}]
                notes.append(
                    f"after {changed} wrong attempts the proxy answered {locked.status}: a lockout (fault "
                    "'lockout'); how long it lasts was not observed, the fault's default applies"
                )
            else:
                notes.append(
                    f"after {changed} refused attempts with credentials the answer changed from {bad[0].status} "
                    f"to {locked.status} (a lockout?); this replay answers every wrong attempt like the first"
                )
    if len(found.realms) > 1:  # the realms themselves are network text: they stay in the YAML data
        notes.append(f"{len(found.realms)} realms were offered (see 'challenges'); the replay uses the first")
    rules = _bypass_rules(observations)
    # names kept with --keep-usernames that passed; ':' cannot be a Basic user name (RFC 7617)
    kept = {o.user for o in observations if o.user and ":" not in o.user and o.credentials and not o.refused}
    users = sorted(kept) or [DEFAULT_USER]
    doc: dict[str, Any] = {
        "version": 1,
        "name": "captured",
        "description": f"Replay of the proxy captured from {source} at {captured_at}.",
        "realm": found.realms[0] if found.realms else "captured",
        "login_hint": f"passwords were not captured: every user has the password '{REPLAY_PASSWORD}'",
        "users": {u: REPLAY_PASSWORD for u in users},
        "schemes": found.names or ["basic"],
        **found.sections,
    }
    if rules:
        doc["rules"] = rules
    doc["default"] = "required"
    if lockout:
        doc["faults"] = lockout
    doc["response"] = response
    text = _header(source, captured_at, observations, notes, users[0]) + dump_yaml(doc)
    parse_scenario(text, "<generated>", Path.cwd(), env={})
    return text


def _merge(into: Schemes, other: Schemes) -> None:
    for name in other.names:
        if name not in into.names:
            into.names.append(name)
    for name, section in other.sections.items():
        into.sections.setdefault(name, section)
    into.realms += [r for r in other.realms if r not in into.realms]


def _bypass_rules(observations: Sequence[Observation]) -> list[dict[str, Any]]:
    """Requests answered without credentials and without a refusal: the proxy let them through."""
    rules: list[dict[str, Any]] = []
    if any(o.kind == "connect" and o.credentials is None and 200 <= o.status < 300 for o in observations):
        rules.append({"name": "connect-without-auth", "match": {"connect": True}, "auth": "none"})
    hosts = sorted({o.host for o in observations if o.kind == "plain" and o.credentials is None and not o.refused})
    refused_hosts = {o.host for o in observations if o.kind == "plain" and o.credentials is None and o.refused}
    if hosts := [h for h in hosts if h not in refused_hosts]:
        rules.append({"name": "passed-without-auth", "match": {"host": hosts, "connect": False}, "auth": "none"})
    return rules


def _header(source: str, captured_at: str, observations: Sequence[Observation], notes: list[str], user: str) -> str:
    kinds = {k: sum(1 for o in observations if o.kind == k) for k in ("plain", "connect")}
    lines = [
        f"captured: the authentication behaviour of the proxy at {source}",
        f"Captured {captured_at} by `mitm407 capture` from {kinds['plain']} plain-HTTP and "
        f"{kinds['connect']} CONNECT answers.",
        "Simulates: that proxy's 407 as it was seen: status line, header order, challenges",
        "(nonces generated afresh), body and connection behaviour (see 'response:').",
        "No secret was recorded: credentials, cookies and passwords were dropped. Every user",
        f"has the made-up password '{REPLAY_PASSWORD}' (edit 'users:', e.g. to env:VAR).",
        "Run it:",
        "  mitm407 run THIS-FILE.yaml      (or: mitmdump -s addons/proxyauth.py --set scenario=THIS-FILE.yaml)",
        f"  curl -x http://{user}:{REPLAY_PASSWORD}@127.0.0.1:8080 http://example.com/   -> passes",
        "  curl -x http://127.0.0.1:8080 http://example.com/                      -> the captured 407",
        *(f"Note: {n}." for n in notes),
    ]
    # Comments are never parsed back, so a line break in them would start YAML: every line is escaped
    # (source and notes may hold network text; the notes avoid it, this is the second lock).
    return "".join(f"# {escape_controls(line)}\n" for line in lines)


class _Dumper(yaml.SafeDumper):
    """Multi-line text as ``|`` blocks even with tabs or trailing spaces (block pages have both).

    PyYAML falls back to a double-quoted one-liner for those; YAML allows them in
    literal blocks. ``dump_yaml`` checks the round trip, so a wrong block is never written.
    Text from the network with any other non-printable character (U+2028, U+0085,
    ``\r``, escape sequences) is double-quoted, where YAML escapes it: single-quoted
    and plain scalars would carry YAML line breaks raw.
    """

    def analyze_scalar(self, scalar: str) -> Any:
        analysis = super().analyze_scalar(scalar)
        if "\n" in scalar and "\r" not in scalar and all(c.isprintable() or c in "\t\n" for c in scalar):
            analysis.allow_block = True
        return analysis


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if not all(ch.isprintable() or ch in "\t\n" for ch in value):
        style: str | None = '"'
    else:
        style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


class _QuotedDumper(yaml.SafeDumper):
    """The fallback: every string double-quoted, the one style that escapes everything."""


_Dumper.add_representer(str, _str)
_QuotedDumper.add_representer(
    str, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
)


def dump_yaml(doc: dict[str, Any]) -> str:
    """The document as YAML that reads back equal to ``doc`` (checked), or CaptureError."""
    options: dict[str, Any] = {"sort_keys": False, "allow_unicode": True, "width": 1 << 16, "default_flow_style": False}
    for dumper in (_Dumper, _QuotedDumper):  # a block the reader would read differently: all quoted
        text = yaml.dump(doc, Dumper=dumper, **options)
        if yaml.safe_load(text) == doc:
            return text
    raise CaptureError("the captured text cannot be written as YAML that reads back the same (a mitm407 bug)")
