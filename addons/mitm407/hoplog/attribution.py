"""Who answered a flow: this proxy, an upstream proxy, or the origin.

Pure: parses ``Via`` (RFC 9110 §7.6.3) and ``Proxy-Status`` (RFC 9209), builds
ours, classifies connection errors into RFC 9209 error types, and decides the
hop from plain facts (``HopFacts``), so the rules test without a proxy.
Parsers are tolerant: headers come from the network, so junk is skipped,
never raised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mitm407.wire.authparams import split_authorization
from mitm407.wire.basic import parse_basic_credentials
from mitm407.wire.terminal import printable

# RFC 9110 §5.6.2: token = 1*tchar
_TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN_RE = re.compile(rf"[{_TCHAR}]+")
# RFC 8941 §3.3.4: sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" )
_SF_TOKEN_RE = re.compile(rf"[A-Za-z*][{_TCHAR}:/]*")
_SF_KEY_RE = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_SF_NUMBER_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?")


class Kind(StrEnum):
    """The hop log's ``answered_by.kind``."""

    THIS_PROXY = "this-proxy"
    UPSTREAM_PROXY = "upstream-proxy"
    ORIGIN = "origin"
    NONE = "none"  # no answer at all (client gave up, flow killed)


# -- Via --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ViaEntry:
    """One hop of ``Via``: ``1.1 squid (squid/5.7)`` -> ("1.1", "squid", "squid/5.7")."""

    protocol: str
    received_by: str
    comment: str | None = None

    def as_log(self) -> dict[str, str | None]:
        return {"protocol": self.protocol, "received_by": self.received_by, "comment": self.comment}


def _split_outside_parens(value: str) -> list[str]:
    """Split a Via value on commas that are not inside a (comment)."""
    parts, depth, start, escaped = [], 0, 0, False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif ch == "\\" and depth:
            escaped = True
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == "," and not depth:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts


def parse_via(values: Iterable[str]) -> list[ViaEntry]:
    """All ``Via`` entries of all header lines, first (farthest from us) first; junk skipped."""
    entries: list[ViaEntry] = []
    for value in values:
        for part in _split_outside_parens(value):
            part = part.strip()
            if not part:
                continue
            head, _, comment = part.partition("(")
            fields = head.split()
            if len(fields) < 2 or not _TOKEN_RE.fullmatch(fields[0].replace("/", "")):
                continue
            text = comment.rstrip()
            entries.append(
                ViaEntry(fields[0][:40], fields[1][:200], text[:-1].strip()[:200] if text.endswith(")") else None)
            )
    return entries


def via_pseudonym(hop_name: str) -> str:
    """``received-by`` must be a token (or host[:port]): replace anything else by ``-``."""
    return re.sub(rf"[^{_TCHAR}:\[\]]", "-", hop_name) or "mitm407"


def build_via(hop_name: str) -> str:
    """Our entry: ``1.1 <hop_name>``."""
    return f"1.1 {via_pseudonym(hop_name)}"


# -- Proxy-Status (RFC 9209, a Structured Field List) ---------------------------

Param = str | int | float | bool


@dataclass(frozen=True, slots=True)
class ProxyStatusEntry:
    """One member: the intermediary's name and its parameters (``error``, ``details``, ...)."""

    hop: str
    params: tuple[tuple[str, Param], ...] = ()

    def param(self, name: str) -> Param | None:
        return next((v for k, v in self.params if k == name), None)

    @property
    def error(self) -> str | None:
        value = self.param("error")
        return value if isinstance(value, str) else None

    def as_log(self) -> dict[str, object]:
        return {"hop": self.hop, "params": dict(self.params)}


class _Cursor:
    """A tiny RFC 8941 reader over one string; every method stops at junk."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ows(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.pos += 1

    def match(self, pattern: re.Pattern[str]) -> str | None:
        m = pattern.match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return m.group()

    def string(self) -> str | None:
        if self.peek() != '"':
            return None
        out, i = [], self.pos + 1
        while i < len(self.text):
            ch = self.text[i]
            if ch == "\\" and i + 1 < len(self.text):
                out.append(self.text[i + 1])
                i += 2
            elif ch == '"':
                self.pos = i + 1
                return "".join(out)
            else:
                out.append(ch)
                i += 1
        return None  # unterminated

    def bare_item(self) -> Param | None:
        ch = self.peek()
        if ch == '"':
            return self.string()
        if ch == "?":
            value = self.text[self.pos + 1 : self.pos + 2]
            if value in ("0", "1"):
                self.pos += 2
                return value == "1"
            return None
        if ch == ":":  # byte sequence: kept as its base64 text
            end = self.text.find(":", self.pos + 1)
            if end < 0:
                return None
            value = self.text[self.pos + 1 : end]
            self.pos = end + 1
            return value
        if ch == "-" or ch.isdigit():
            number = self.match(_SF_NUMBER_RE)
            if number is None:
                return None
            return float(number) if "." in number else int(number)
        return self.match(_SF_TOKEN_RE)

    def params(self) -> list[tuple[str, Param]]:
        params: list[tuple[str, Param]] = []
        while True:
            self.skip_ows()
            if self.peek() != ";":
                return params
            self.pos += 1
            self.skip_ows()
            key = self.match(_SF_KEY_RE)
            if key is None:
                return params
            value: Param | None = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
                if value is None:
                    return params
            params.append((key, value))

    def skip_member(self) -> None:
        """Resynchronise after junk: jump past the next top-level comma."""
        in_string = False
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == '"':
                in_string = not in_string
            elif ch == "\\" and in_string:
                self.pos += 1
            elif ch == "," and not in_string:
                return


def parse_proxy_status(values: Iterable[str]) -> list[ProxyStatusEntry]:
    """Members of all ``Proxy-Status`` lines, origin-side first (RFC 9209 §2); junk members skipped."""
    entries: list[ProxyStatusEntry] = []
    for value in values:
        cursor = _Cursor(value)
        while cursor.pos < len(cursor.text):
            cursor.skip_ows()
            item = cursor.bare_item() if cursor.peek() != "(" else None  # inner lists are not hops
            if isinstance(item, str) and item:
                params = cursor.params()
                cursor.skip_ows()
                if cursor.peek() in (",", ""):
                    entries.append(ProxyStatusEntry(item[:200], tuple(params)))
                    cursor.pos += 1
                    continue
            cursor.skip_member()
    return entries


def sf_string(text: str) -> str:
    """An RFC 8941 sf-string: printable ASCII only, ``\\`` and ``"`` escaped."""
    clean = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sf_name(text: str) -> str:
    """A hop name as an sf-token when it is one, else as an sf-string."""
    return text if _SF_TOKEN_RE.fullmatch(text) else sf_string(text)


def build_proxy_status(
    hop_name: str, error: str | None = None, details: str | None = None, next_hop: str | None = None
) -> str:
    """Our member: ``edge; error=connection_refused; next-hop="127.0.0.1:3128"; details="..."``."""
    out = sf_name(hop_name)
    if error:
        out += f"; error={error}"
    if next_hop:
        out += f"; next-hop={sf_string(next_hop)}"
    if details:
        out += f"; details={sf_string(details[:200])}"
    return out


# -- error types ------------------------------------------------------------------

# RFC 9209 §2.3 error types for what a proxy sees when the next hop fails.
# Checked in order against the lower-cased error text; first match wins.
_ERROR_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dns_timeout", ("dns timeout", "dns lookup timed out")),
    (
        "dns_error",
        ("name or service not known", "nodename nor servname", "getaddrinfo", "no address associated",
         "temporary failure in name resolution", "name resolution", "dns"),
    ),
    ("connection_refused", ("connection refused", "connect call failed", "errno 111", "econnrefused")),
    ("tls_certificate_error", ("certificate",)),
    ("tls_alert_received", ("alert",)),
    ("tls_protocol_error", ("tls", "ssl", "handshake")),
    ("connection_timeout", ("timed out", "timeout")),
    ("destination_ip_unroutable", ("no route to host", "network is unreachable")),
    ("connection_terminated", ("reset by peer", "connection reset", "broken pipe", "connection closed",
                               "disconnected", "peer closed")),
)

# status of a response this proxy made itself -> RFC 9209 error type
ANSWER_ERROR_TYPES = {
    401: "http_request_denied",
    403: "http_request_denied",
    407: "http_request_denied",
    503: "proxy_configuration_error",
}


def classify_error(message: str) -> str:
    """An RFC 9209 error type for a connection/protocol error message."""
    text = message.lower()
    for error_type, needles in _ERROR_PATTERNS:
        if any(n in text for n in needles):
            return error_type
    return "proxy_internal_error"


_CONNECT_REFUSED_RE = re.compile(r"Upstream proxy (\S+) refused HTTP CONNECT request: (\d{3})")


def parse_connect_refusal(message: str) -> tuple[str, int] | None:
    """mitmproxy's "Upstream proxy HOST:PORT refused HTTP CONNECT request: 407 ..." -> (HOST:PORT, 407)."""
    m = _CONNECT_REFUSED_RE.search(message)
    return (m.group(1), int(m.group(2))) if m else None


# -- redaction ---------------------------------------------------------------------


def redact_query(path: str, keep_values: bool = False) -> str:
    """``/s?q=secret&x`` -> ``/s?q=REDACTED&x``: names kept, values hidden unless asked."""
    base, sep, query = path.partition("?")
    if not sep or keep_values:
        return path
    parts = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        parts.append(f"{name}=REDACTED" if eq and value else pair)
    return f"{base}?{'&'.join(parts)}"


def describe_credentials(value: str) -> tuple[str, str | None]:
    """(scheme, user) of an Authorization-style value; the user only for Basic. Never the secret."""
    token, credentials = split_authorization(value)
    user = None
    if token == "basic":
        try:
            user = printable(parse_basic_credentials(credentials)[0])
        except ValueError:
            user = None
    return printable(token, 20) or "(empty)", user


# -- attribution ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HopFacts:
    """What attribution may look at, taken from a flow at its end."""

    hop_name: str
    answered_here: bool  # this addon (or another mitm407 addon) made the response
    status: int | None  # status the client got from upstream; None if no response
    origin: str  # "host:port" of the destination
    upstream: str | None = None  # "host:port" of the upstream proxy (mitmproxy upstream mode)
    via: tuple[ViaEntry, ...] = ()  # as received from the next hop
    proxy_status: tuple[ProxyStatusEntry, ...] = ()  # as received from the next hop
    server: str = ""  # the response's Server header
    error: str | None = None  # flow.error message
    answer_reason: str | None = None  # why this proxy answered (AuthResult.reason)
    body_hint: str = ""  # the first bytes of an upstream error page (mitmproxy's own)
    # the request went through a CONNECT tunnel the upstream proxy opened: what comes back
    # through it is the origin's, even a 407
    upstream_tunnel: bool = False


@dataclass(frozen=True, slots=True)
class Attribution:
    kind: Kind
    hop: str
    error_type: str | None = None  # RFC 9209 error type, when there was an error
    next_hop: str | None = None  # the hop a connection error was about
    upstream_status: int | None = None  # an upstream proxy's refusal hidden behind a 502
    details: str | None = None

    def as_log(self) -> dict[str, str]:
        return {"kind": self.kind.value, "hop": self.hop}


def _upstream_name(facts: HopFacts) -> str:
    """Name an upstream proxy: its Proxy-Status member, else its Via entry, else its address."""
    if facts.proxy_status:
        return facts.proxy_status[-1].hop
    if facts.via:
        return facts.via[-1].received_by
    return facts.upstream or "upstream"


def _is_mitmproxy_error_page(facts: HopFacts) -> bool:
    """mitmproxy's own error responses carry ``Server: mitmproxy x.y`` and no Via."""
    return facts.server.lower().startswith("mitmproxy") and not facts.via and (facts.status or 0) >= 500


def attribute_hop(facts: HopFacts) -> Attribution:
    """Decide who answered, from the facts, in the order of the README's attribution rules."""
    if facts.answered_here:
        status = facts.status or 0
        error = None
        if status >= 400:
            error = ANSWER_ERROR_TYPES.get(status) or (
                classify_error(facts.error) if facts.error else "proxy_internal_response"
            )
        return Attribution(Kind.THIS_PROXY, facts.hop_name, error, details=facts.answer_reason or facts.error)
    if facts.status is None:
        if not facts.error:
            return Attribution(Kind.NONE, "")
        refusal = parse_connect_refusal(facts.error)
        if refusal is not None:  # the 502 mitmproxy sends when upstream refuses its CONNECT
            address, status = refusal
            return Attribution(
                Kind.UPSTREAM_PROXY, address, "http_request_denied", address, status, details=facts.error
            )
        if facts.error.lower().startswith(("client disconnected", "connection killed")):
            return Attribution(Kind.NONE, "", details=facts.error)
        next_hop = facts.upstream or facts.origin
        return Attribution(
            Kind.THIS_PROXY, facts.hop_name, classify_error(facts.error), next_hop, details=facts.error
        )
    with_error = [entry for entry in facts.proxy_status if entry.error]
    if with_error:  # RFC 9209: the member with an error names the intermediary that made it
        entry = with_error[-1]
        next_hop = entry.param("next-hop")
        details = entry.param("details")
        return Attribution(
            Kind.UPSTREAM_PROXY,
            entry.hop,
            entry.error,
            next_hop if isinstance(next_hop, str) else None,
            details=details if isinstance(details, str) else None,
        )
    if facts.upstream is not None and not facts.upstream_tunnel:
        if facts.status == 407:
            return Attribution(Kind.UPSTREAM_PROXY, _upstream_name(facts), "http_request_denied")
        if _is_mitmproxy_error_page(facts):
            return Attribution(
                Kind.UPSTREAM_PROXY, facts.upstream, classify_error(facts.body_hint), details=facts.body_hint or None
            )
    return Attribution(Kind.ORIGIN, facts.origin)


# -- one upstream, one name (reports) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class UpstreamIdentity:
    """This hop's upstream proxy as one logged record shows it: its address, and its name if it gave one."""

    address: str
    name: str | None


def _nearest(entries: object, key: str, hop: str) -> str | None:
    """The entry nearest this hop (the last one, RFC 9110 §7.6.3, RFC 9209 §2) that is not this hop's own."""
    if not isinstance(entries, list):
        return None
    for entry in reversed(entries):
        name = entry.get(key) if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name and name != hop:
            return name
    return None


def upstream_identity(record: Mapping[str, Any]) -> UpstreamIdentity | None:
    """The upstream proxy of a hop-log record (``upstream_proxy``), named as ``_upstream_name`` names it.

    The hop log names an upstream by its ``Proxy-Status``/``Via`` when it sent
    one and by its address when not (a refused CONNECT, an error page): reports
    group by the address and show the name learnt from any record.
    """
    address = record.get("upstream_proxy")
    if not isinstance(address, str) or not address:
        return None
    hop = record.get("hop") if isinstance(record.get("hop"), str) else ""
    name = _nearest(record.get("proxy_status"), "hop", hop) or _nearest(record.get("via"), "received_by", hop)
    return UpstreamIdentity(address, name if name != address else None)


def answering_upstream(record: Mapping[str, Any], identity: UpstreamIdentity | None) -> UpstreamIdentity | None:
    """``identity`` (the record's ``upstream_identity``, which the caller has already) when the
    record says this hop's own upstream answered (by address or by its name)."""
    answered = record.get("answered_by")
    if not isinstance(answered, Mapping) or answered.get("kind") != Kind.UPSTREAM_PROXY.value:
        return None
    if identity is None or answered.get("hop") not in (identity.address, identity.name):
        return None  # a proxy farther away (its Proxy-Status error): keyed by its own name
    return identity
