"""The exact shape of this proxy's refusal: the scenario's ``response:`` section.

A captured corporate proxy (``mitm407 capture``) is recognised by clients and
people by the details of its 407: status line, the order of its
``Proxy-Authenticate`` headers, ``Server``/``Via``/``X-Squid-Error``, an HTML
body, whether it closes the connection. This module reads that description
(validated with ``file:line:col`` like the rest of the scenario) and builds
the ``Answer`` from it. Pure: no mitmproxy import; ``addon.refuse`` calls
``build_shaped_answer``.

Keys not given inherit: ``connect:`` and ``bad_credentials:`` override the
base shape for CONNECT requests and for wrong credentials (both may apply).
"""

from __future__ import annotations

import email.utils
import html
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

import yaml

from mitm407.core.answers import Answer, build_challenge, build_denial
from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.yamlnodes import Mapping, Node, Reader
from mitm407.wire.authparams import AuthParamError, parse_challenges

CHALLENGES_MARKER = "{challenges}"
# Placeholders filled per answer; anything else in braces (CSS, JavaScript) stays as written.
PLACEHOLDERS = ("date", "content_length", "url", "authority", "host", "method", "reason", "hop", "status", "nonce")
_PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
QUOTE_HINT = 'quote values that start with "{", e.g. Date: "{date}"'
SHAPE_KEYS = ("status", "reason", "challenges", "headers", "body", "close")
OVERRIDES = ("connect", "bad_credentials", "denied")
# Results answered by ``bad_credentials:``: credentials were sent and are wrong.
BAD_CREDENTIAL_RESULTS = frozenset({Result.BAD_CREDENTIALS, Result.UNKNOWN_USER})


@dataclass(frozen=True)
class Verbatim:
    """A challenge of a scheme mitm407 does not implement, sent as written."""

    value: str


# Schemes whose verbatim challenges must carry a nonce the scheme issued, to verify the answer.
VERIFYING_NONCES = ("digest",)
ChallengeItem = str | Verbatim  # a scheme name from ``schemes:``, or a verbatim value


@dataclass(frozen=True)
class Shape:
    """One refusal shape; ``None`` fields keep mitm407's own default."""

    status: int | None = None
    reason: str | None = None
    challenges: tuple[ChallengeItem, ...] | None = None  # None: every scheme, scenario order
    headers: tuple[tuple[str, str], ...] | None = None  # None: Content-Type text/plain
    body: str | None = None  # None: mitm407's explanatory text
    close: bool | None = None

    def over(self, base: Shape) -> Shape:
        """This shape's given fields on top of ``base``."""
        given = {k: getattr(self, k) for k in SHAPE_KEYS if getattr(self, k) is not None}
        return replace(base, **given)


@dataclass(frozen=True)
class ResponseShapes:
    """The resolved shapes, computed once per scenario load."""

    plain: Shape
    connect: Shape
    plain_bad: Shape
    connect_bad: Shape
    # 403s (deny rules, a lockout): only shaped when ``denied:`` is given,
    # since the base shape describes a 407.
    plain_denied: Shape | None = None
    connect_denied: Shape | None = None

    def pick(self, facts: RequestFacts, auth: AuthResult, deny: bool = False) -> Shape | None:
        if deny:
            return self.connect_denied if facts.is_connect else self.plain_denied
        bad = auth.result in BAD_CREDENTIAL_RESULTS
        if facts.is_connect:
            return self.connect_bad if bad else self.connect
        return self.plain_bad if bad else self.plain


# -- reading -------------------------------------------------------------------


def parse_response(reader: Reader, section: Mapping | None, schemes: tuple[str, ...]) -> ResponseShapes | None:
    """Validate ``response:``; ``schemes`` are the names a challenge item may use."""
    if section is None:
        return None
    base = _parse_shape(reader, section, schemes)
    overrides = {}
    for key in OVERRIDES:
        sub = section.mapping(key)
        overrides[key] = _parse_shape(reader, sub, schemes) if sub is not None else Shape()
        if sub is not None:
            sub.finish()
    section.finish()
    connect = overrides["connect"].over(base)
    bad, denied = overrides["bad_credentials"], overrides["denied"]
    if denied.challenges is None:  # a 403 offers no challenge unless it says so
        denied = replace(denied, challenges=())
    given = section.get("denied") is not None
    return ResponseShapes(
        plain=base,
        connect=connect,
        plain_bad=bad.over(base),
        connect_bad=bad.over(connect),
        plain_denied=denied.over(base) if given else None,
        connect_denied=denied.over(connect) if given else None,
    )


def _parse_shape(reader: Reader, m: Mapping, schemes: tuple[str, ...]) -> Shape:
    status = m.integer("status", None, minimum=100)
    if status is not None and status > 599:
        reader.error(m.get("status") or m.node, f"'status' must be an HTTP status code (100-599), got {status}")
    reason = m.text("reason")
    if reason is not None and ("\r" in reason or "\n" in reason):
        reader.error(m.get("reason") or m.node, "'reason' must be one line")
    challenges = None
    node = m.get("challenges")
    if node is not None:
        challenges = tuple(_parse_challenges(reader, node, schemes))
    headers = None
    node = m.get("headers")
    if node is not None:
        headers = tuple(_parse_headers(reader, node))
    body = m.text("body")
    close_node = m.get("close")
    close = reader.boolean(close_node, "'close'") if close_node is not None else None
    return Shape(status, reason, challenges, headers, body, close)


def _parse_challenges(reader: Reader, node: Node, schemes: tuple[str, ...]) -> list[ChallengeItem]:
    out: list[ChallengeItem] = []
    for item in reader.sequence(node, "'challenges'"):
        if isinstance(item, yaml.MappingNode):  # {value: '...'}: sent as written
            entry = reader.mapping(item, "a challenge")
            assert entry is not None
            value = entry.text("value", required=True)
            entry.finish()
            if value is not None and ("\r" in value or "\n" in value):
                reader.error(item, "a challenge value must be one line")
            elif value is not None:
                out.append(Verbatim(value))
            continue
        name = reader.text(item, "a challenge")  # a scheme name
        if name is None:
            continue
        if name.lower() not in schemes:
            reader.error(
                item,
                f"challenge '{name}' is not a scheme listed in 'schemes' ({', '.join(schemes)})",
                "add it to 'schemes', or write {value: '...'} to send a challenge verbatim",
            )
        elif name.lower() in out:
            reader.error(item, f"scheme '{name}' is listed twice in 'challenges'")
        else:
            out.append(name.lower())
    return out


def _parse_headers(reader: Reader, node: Node) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    markers = 0
    for item in reader.sequence(node, "'headers'"):
        entry = reader.mapping(item, "a header (one 'Name: value' mapping)")
        if entry is None:
            continue
        entries = list(entry.items())
        if len(entries) != 1:
            reader.error(item, "each header is a one-key mapping, e.g. '- Server: squid/5.7'")
            continue
        name, key_node, value_node = entries[0]
        if not isinstance(value_node, yaml.ScalarNode):
            reader.error(value_node, f"the value of header '{name}' must be a string", QUOTE_HINT)
            continue
        value = reader.text(value_node, f"the value of header '{name}'")
        if value is None:
            continue
        if not _TOKEN_RE.match(name):
            reader.error(key_node, f"'{name}' is not a valid header name")
            continue
        if "\r" in value or "\n" in value:
            reader.error(value_node, f"the value of header '{name}' must be one line")
            continue
        if name.lower() == "transfer-encoding":
            reader.error(key_node, "'Transfer-Encoding' cannot be replayed", "the body is sent with Content-Length")
            continue
        if value == CHALLENGES_MARKER:
            markers += 1
            if markers > 1:
                reader.error(value_node, f"'{CHALLENGES_MARKER}' may appear only once in 'headers'")
                continue
        out.append((name, value))
    return out


# -- building ------------------------------------------------------------------


def fill(template: str, values: dict[str, str]) -> str:
    """Replace the known ``{placeholders}``; other braces are left alone."""
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def request_values(facts: RequestFacts) -> dict[str, str]:
    """``{url}`` (no query: queries may hold tokens), ``{authority}``, ``{host}``, ``{method}``."""
    host = f"[{facts.host}]" if ":" in facts.host else facts.host
    authority = f"{host}:{facts.port}"
    if facts.is_connect:
        url = facts.target
    elif facts.target.startswith("/"):  # mitmproxy hands absolute-form requests on in origin-form
        url = f"http://{host if facts.port == 80 else authority}{facts.path.split('?', 1)[0]}"
    else:
        url = facts.target.split("?", 1)[0]
    return {"url": url, "authority": authority, "host": host, "method": facts.method}


def is_markup(headers: tuple[tuple[str, str], ...] | None) -> bool:
    """Will a browser read the shaped body as HTML? Yes for HTML/XML types, and with no type (sniffed)."""
    if headers is None:  # mitm407's own headers: text/plain
        return False
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    return content_type is None or "html" in content_type.lower() or "xml" in content_type.lower()


def body_values(values: dict[str, str], headers: tuple[tuple[str, str], ...] | None) -> dict[str, str]:
    """The placeholder values for a body: HTML-escaped when the body is markup.

    ``{url}``, ``{host}``, ``{reason}`` (a user name) come from the client; a
    Squid-like error page that reflected them raw would run the client's script.
    """
    if not is_markup(headers):
        return values
    return {k: html.escape(v, quote=True) for k, v in values.items()}


def new_nonce() -> str:
    return secrets.token_hex(16)


def build_shaped_answer(
    shapes: ResponseShapes,
    auth: AuthResult,
    facts: RequestFacts,
    challenges_of: Callable[[str], list[str]],
    all_challenges: Callable[[], list[str]],
    hop_name: str,
    now: float | None = None,
    nonce: Callable[[], str] = new_nonce,
    deny: bool = False,
) -> Answer | None:
    """The refusal as the shape says; unset parts come from mitm407's own 407 (or 403).

    None for a denial when the scenario shapes no denial (``denied:``).
    """
    shape = shapes.pick(facts, auth, deny)
    if shape is None:
        return None
    if auth.result is Result.CONTINUE:  # a handshake's next leg: only its own challenge
        challenges = [v for k, v in auth.headers if k.lower().endswith("-authenticate")]
        extra = tuple((k, v) for k, v in auth.headers if not k.lower().endswith("-authenticate"))
    else:
        challenges, extra = _challenge_values(shape, challenges_of, all_challenges, nonce), auth.headers
    default = build_denial(auth, hop_name) if deny else build_challenge(auth, challenges, True, hop_name)
    status = shape.status or default.status
    values = {
        **request_values(facts),
        "date": email.utils.formatdate(now, usegmt=True),
        "reason": auth.reason,
        "hop": hop_name,
        "status": str(status),
    }
    body = default.body if shape.body is None else fill(shape.body, body_values(values, shape.headers))
    reason = shape.reason or ""
    if shape.headers is None:  # mitm407's own headers (to_response adds Content-Type, Connection)
        return replace(default, status=status, body=body, reason=reason, close=bool(shape.close))
    values["content_length"] = str(len(body.encode("utf-8")))
    headers = _lay_out(shape.headers, challenges, values, extra)
    if shape.close:
        headers = [h for h in headers if h[0].lower() != "connection"] + [("Connection", "close")]
    return Answer(status, tuple(headers), body, reason, bool(shape.close), complete=True)


def _challenge_values(
    shape: Shape,
    challenges_of: Callable[[str], list[str]],
    all_challenges: Callable[[], list[str]],
    nonce: Callable[[], str],
) -> list[str]:
    if shape.challenges is None:
        return all_challenges()
    out: list[str] = []
    for item in shape.challenges:
        if isinstance(item, Verbatim):
            out.append(item.value.replace("{nonce}", _nonce_for(item.value, challenges_of, nonce)))
        else:
            out.extend(challenges_of(item))
    return out


def _nonce_for(value: str, challenges_of: Callable[[str], list[str]], nonce: Callable[[], str]) -> str:
    """The nonce of a verbatim challenge: its scheme's own (so it can verify the answer), else random."""
    if "{nonce}" not in value:
        return ""
    token = value.split(" ", 1)[0].lower()
    for value in challenges_of(token) if token in VERIFYING_NONCES else ():
        try:  # the scheme's own challenge: well-formed, but a parse error must not fail the answer
            issued = next((c.param("nonce") for c in parse_challenges(value) if c.param("nonce")), None)
        except AuthParamError:
            issued = None
        if issued:
            return issued
    return nonce()


def _lay_out(
    template: tuple[tuple[str, str], ...],
    challenges: list[str],
    values: dict[str, str],
    extra: tuple[tuple[str, str], ...],
) -> list[tuple[str, str]]:
    """The shape's headers in order, the challenges at their marker (or first)."""
    out: list[tuple[str, str]] = []
    placed = False
    for name, value in template:
        if value == CHALLENGES_MARKER:
            out.extend((name, c) for c in challenges)
            placed = True
        else:
            out.append((name, fill(value, values)))
    if not placed:
        out[:0] = [("Proxy-Authenticate", c) for c in challenges]
    return out + list(extra)
