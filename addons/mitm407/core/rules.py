"""Which requests must authenticate: ordered rules, compiled once per load.

The hot path calls ``Rules.find`` for every request, so matching is a few
precompiled regex/set/network checks; nothing is parsed per request.

Rules run on the client's path *before* authentication, so ``path_regex`` is
compiled by RE2 (google-re2), whose matching time is linear in the path: a
pattern such as ``^/(a+)+$`` cannot freeze the proxy with a crafted path.
Patterns RE2 cannot run (backreferences, lookaround, atomic groups) are refused
at load with ``file:line:col``. Host globs keep Python's ``re``: they are built
by ``fnmatch.translate``, which emits no backtracking traps.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mitm407.core.facts import RequestFacts
from mitm407.core.yamlnodes import Node, Reader


class Outcome(StrEnum):
    REQUIRED = "required"  # authenticate with the scenario's schemes
    NONE = "none"  # bypass: forward without asking for credentials
    DENY = "deny"  # 403 from this proxy, whatever the credentials


OUTCOMES = tuple(o.value for o in Outcome)
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


RE2_PACKAGE = "google-re2"
RE2_HINT = (
    "path_regex runs on client paths before authentication, so mitm407 matches it with RE2 (linear time): "
    "backreferences, lookaround, atomic groups, possessive quantifiers and \\Z are not available; "
    "see docs/hostile-input.md"
)


@dataclass(frozen=True)
class PathRegex:
    """A ``path_regex`` compiled by RE2: matching time is linear in the path, whatever the pattern."""

    pattern: str
    compiled: Any  # re2._Regexp over UTF-8 bytes

    def search(self, path: str) -> bool:
        # bytes: lone surrogates (undecodable bytes of the request line) cannot make the encoder raise
        return self.compiled.search(path.encode("utf-8", "surrogateescape")) is not None


class PathRegexError(ValueError):
    """The pattern cannot be used; the message says why (and which package, when RE2 is missing)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def compile_path_regex(pattern: str) -> PathRegex:
    """RE2 for ``pattern``, or PathRegexError naming the Python syntax error or the RE2 limitation."""
    try:
        re.compile(pattern)
    except re.error as e:  # not a regular expression at all: Python's message, which users know
        raise PathRegexError(f"bad path_regex: {e}") from None
    try:
        import re2
    except ImportError:
        raise PathRegexError(
            f"path_regex needs the package '{RE2_PACKAGE}', which is not installed",
            f"pip install {RE2_PACKAGE} (a mitm407 dependency): it matches in linear time",
        ) from None
    options = re2.Options()
    options.log_errors = False  # else RE2 writes every refused pattern to stderr
    try:
        compiled = re2.compile(pattern.encode("utf-8", "surrogateescape"), options)
    except re2.error as e:
        reason = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise PathRegexError(f"path_regex uses what RE2 cannot run: {reason}", RE2_HINT) from None
    return PathRegex(pattern, compiled)


@dataclass(frozen=True)
class Match:
    """All given conditions must hold; an absent condition matches anything."""

    hosts: re.Pattern[str] | None = None
    ports: frozenset[int] | None = None
    path_prefixes: tuple[str, ...] | None = None
    path_regex: PathRegex | None = None
    methods: frozenset[str] | None = None
    connect: bool | None = None
    clients: tuple[IPNetwork, ...] | None = None
    # the globs ``hosts`` was compiled from, lowercased, in file order: a PAC file (scenario/pac.py) re-states them
    host_globs: tuple[str, ...] | None = None

    def matches(self, facts: RequestFacts) -> bool:
        if self.connect is not None and facts.is_connect != self.connect:
            return False
        if self.methods is not None and facts.method not in self.methods:
            return False
        if self.ports is not None and facts.port not in self.ports:
            return False
        if self.hosts is not None and not self.hosts.match(facts.host):
            return False
        if self.path_prefixes is not None and not facts.path.startswith(self.path_prefixes):
            return False
        if self.path_regex is not None and not self.path_regex.search(facts.path):
            return False
        return self.clients is None or client_in(facts.client_ip, self.clients)


def client_in(ip: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in net for net in networks)


@dataclass(frozen=True)
class Rule:
    index: int  # 1-based position in the file, for log lines
    line: int
    match: Match
    outcome: Outcome
    name: str = ""
    faults: tuple[Any, ...] = field(default=())  # per-rule faults (see faults.py)

    @property
    def label(self) -> str:
        return f"rule {self.index}" + (f" '{self.name}'" if self.name else "") + f" (line {self.line})"


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    default: Outcome

    def find(self, facts: RequestFacts) -> Rule | None:
        """The first rule that matches, or None (then ``default`` applies)."""
        for rule in self.rules:
            if rule.match.matches(facts):
                return rule
        return None


MATCH_KEYS = ("host", "port", "path", "path_regex", "method", "connect", "client")


def compile_hosts(globs: tuple[str, ...]) -> re.Pattern[str]:
    """Host globs (``*.corp.example``) into one case-insensitive regex."""
    return re.compile("|".join(fnmatch.translate(g.lower()) for g in globs), re.IGNORECASE)


def parse_match(reader: Reader, node: Node | None) -> Match:
    m = reader.mapping(node, "'match'")
    if m is None:
        return Match()
    hosts = m.text_list("host") or None
    ports: set[int] = set()
    port_node = m.get("port")
    for item in reader.sequence(port_node, "'port'"):
        port = reader.integer(item, "'port'", minimum=1)
        if port is not None:
            ports.add(port)
    prefixes = m.text_list("path") or None
    if prefixes:
        for p in prefixes:
            if not p.startswith("/"):
                reader.error(m.get("path") or m.node, f"path prefix '{p}' must start with '/'")
    regex = None
    regex_text = m.text("path_regex")
    if regex_text is not None:
        try:
            regex = compile_path_regex(regex_text)
        except PathRegexError as e:
            reader.error(m.get("path_regex") or m.node, str(e), e.hint)
    methods = frozenset(x.upper() for x in m.text_list("method")) or None
    connect_node = m.get("connect")
    connect = reader.boolean(connect_node, "'connect'") if connect_node is not None else None
    clients: list[IPNetwork] = []
    for item in reader.sequence(m.get("client"), "'client'"):
        text = reader.text(item, "'client'")
        if text is None:
            continue
        try:
            clients.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            reader.error(item, f"'{text}' is not an IP address or CIDR network", "e.g. 10.0.0.0/8 or 127.0.0.1")
    m.finish()
    return Match(
        hosts=compile_hosts(hosts) if hosts else None,
        host_globs=tuple(g.lower() for g in hosts) if hosts else None,
        ports=frozenset(ports) if ports else None,
        path_prefixes=prefixes,
        path_regex=regex,
        methods=methods,
        connect=connect,
        clients=tuple(clients) if clients else None,
    )


FaultParser = Callable[[Reader, Node | None], tuple[Any, ...]]


def parse_rules(reader: Reader, node: Node | None, parse_faults: FaultParser) -> tuple[Rule, ...]:
    """Read the ``rules:`` list; each item is ``{match: {...}, auth: OUTCOME}``."""
    rules = []
    for index, item in enumerate(reader.sequence(node, "'rules'"), start=1):
        m = reader.mapping(item, f"rule {index}")
        if m is None:
            continue
        match = parse_match(reader, m.get("match"))
        outcome = Outcome(m.choice("auth", OUTCOMES, Outcome.REQUIRED.value))
        if "auth" not in m:
            reader.error(item, f"rule {index} needs 'auth' (one of {', '.join(OUTCOMES)})")
        name = m.text("name", "") or ""
        faults = parse_faults(reader, m.get("faults"))
        m.finish()
        rules.append(Rule(index, item.start_mark.line + 1, match, outcome, name, faults))
    return tuple(rules)
