"""Faults injected on top of correct authentication (expiry, rotation, ...): their settings.

A scenario lists faults at the top level or per rule, each as a one-key
mapping: ``- expire_after: {requests: 3}``. ``FAULT_PARSERS`` maps a fault
name to the function that validates its settings into a frozen value; the
behaviour of each fault lives in ``fault_engine.py`` (one class per name).
Parsing is done once per scenario load, never per request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from mitm407.core.problems import did_you_mean
from mitm407.core.yamlnodes import Mapping, Node, Reader


@dataclass(frozen=True)
class FaultSpec:
    """A configured fault: its name, settings and where it was written."""

    name: str
    settings: Any
    line: int


FAULT_PARSERS: dict[str, Callable[[Reader, Node], Any]] = {}
NULL_TAG = "tag:yaml.org,2002:null"
TOP_LEVEL_ONLY = frozenset({"rotate"})  # faults that change the whole proxy, not one rule's requests


def fault(name: str) -> Callable[[Callable[[Reader, Node], Any]], Callable[[Reader, Node], Any]]:
    """Register a settings parser under a fault name."""

    def register(parser: Callable[[Reader, Node], Any]) -> Callable[[Reader, Node], Any]:
        FAULT_PARSERS[name] = parser
        return parser

    return register


def parse_faults(reader: Reader, node: Node | None, top_level: bool = False) -> tuple[FaultSpec, ...]:
    out: list[FaultSpec] = []
    for item in reader.sequence(node, "'faults'"):
        if isinstance(item, yaml.ScalarNode) and item.tag == "tag:yaml.org,2002:str":
            # shorthand for a fault without settings: '- always_407'
            name, key_node, value = item.value, item, yaml.ScalarNode(NULL_TAG, "", item.start_mark, item.end_mark)
        else:
            m = reader.mapping(item, "a fault")
            if m is None:
                continue
            entries = list(m.items())
            if len(entries) != 1:
                reader.error(item, "each fault is a one-key mapping, e.g. '- expire_after: {requests: 3}'")
                continue
            name, key_node, value = entries[0]
        parser = FAULT_PARSERS.get(name)
        if parser is None:
            reader.error(key_node, f"unknown fault '{name}'", did_you_mean(name, FAULT_PARSERS))
            continue
        if name in TOP_LEVEL_ONLY and not top_level:
            reader.error(key_node, f"'{name}' applies to the whole proxy", "list it under the top-level 'faults:'")
            continue
        out.append(FaultSpec(name, parser(reader, value), key_node.start_mark.line + 1))
    return tuple(out)


# -- shared pieces of settings ---------------------------------------------------


def settings_of(reader: Reader, node: Node, name: str) -> Mapping | None:
    """The fault's settings mapping; None for ``- always_407:`` or ``{}``-less forms."""
    if isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG:
        return None
    return reader.mapping(node, f"'{name}'")


@dataclass(frozen=True)
class Schedule:
    """Every N requests or every T seconds (exactly one is set)."""

    requests: int | None = None
    seconds: float | None = None

    def describe(self) -> str:
        if self.requests is not None:
            return f"{self.requests} request{'s' if self.requests != 1 else ''}"
        return f"{self.seconds:g} s"


def read_schedule(reader: Reader, m: Mapping | None, node: Node, name: str, seconds_key: str = "seconds") -> Schedule:
    """``requests: N`` or ``seconds: T``; exactly one."""
    if m is None:
        example = f"e.g. {{requests: 3}} or {{{seconds_key}: 60}}"
        reader.error(node, f"'{name}' needs 'requests' or '{seconds_key}'", example)
        return Schedule(requests=1)
    requests = m.integer("requests", None, minimum=1)
    seconds = m.number(seconds_key, None, minimum=0)
    if (requests is None) == (seconds is None):
        reader.error(m.node, f"'{name}' needs exactly one of 'requests' and '{seconds_key}'")
        return Schedule(requests=requests or 1)
    if seconds is not None and seconds <= 0:
        reader.error(m.get(seconds_key) or m.node, f"'{seconds_key}' must be more than 0")
        return Schedule(seconds=1.0)
    return Schedule(requests, seconds)


@dataclass(frozen=True)
class Trigger:
    """Which eligible requests a fault hits: every Nth, then with a probability.

    The random draws come from ``random.Random(seed)``, so a run is repeatable.
    """

    every: int = 1
    probability: float = 1.0
    seed: int = 0


def read_trigger(reader: Reader, m: Mapping | None) -> Trigger:
    if m is None:
        return Trigger()
    every = m.integer("every", 1, minimum=1) or 1
    probability = m.number("probability", 1.0, minimum=0) or 0.0
    if probability > 1:
        reader.error(m.get("probability") or m.node, f"'probability' must be between 0 and 1, got {probability:g}")
    seed = m.integer("seed", 0) or 0
    return Trigger(every, min(probability, 1.0), seed)


def read_int_choice(reader: Reader, m: Mapping, key: str, choices: tuple[int, ...], default: int) -> int:
    node = m.get(key)
    if node is None:
        return default
    value = reader.integer(node, f"'{key}'")
    if value is None:
        return default
    if value not in choices:
        reader.error(node, f"'{key}' must be one of {', '.join(map(str, choices))}, got {value}")
        return default
    return value


# -- settings of each fault --------------------------------------------------------


@dataclass(frozen=True)
class NoSettings:
    """For faults that take none: ``- always_407:`` or ``- always_407: {}``."""


def no_settings(name: str) -> Callable[[Reader, Node], NoSettings]:
    def parse(reader: Reader, node: Node) -> NoSettings:
        m = settings_of(reader, node, name)
        if m is not None:
            m.finish()
        return NoSettings()

    return parse


for _name in ("always_407", "challenge_missing", "close_on_407", "connect_only"):
    FAULT_PARSERS[_name] = no_settings(_name)


@dataclass(frozen=True)
class ScheduleOnly:
    """Settings of ``expire_after`` and ``reauth_every``: ``{requests: N}`` or ``{seconds: T}``."""

    schedule: Schedule


def schedule_only(name: str) -> Callable[[Reader, Node], ScheduleOnly]:
    def parse(reader: Reader, node: Node) -> ScheduleOnly:
        m = settings_of(reader, node, name)
        schedule = read_schedule(reader, m, node, name)
        if m is not None:
            m.finish()
        return ScheduleOnly(schedule)

    return parse


for _name in ("expire_after", "reauth_every"):
    FAULT_PARSERS[_name] = schedule_only(_name)


@dataclass(frozen=True)
class Rotate:
    user: str
    passwords: tuple[str, ...] = ()  # repr would show them: never log a Rotate
    schedule: Schedule = Schedule(requests=1)
    cycle: bool = True  # after the last password, start again with the first

    def __repr__(self) -> str:
        return f"Rotate(user={self.user!r}, passwords=<{len(self.passwords)} hidden>, schedule={self.schedule})"


@fault("rotate")
def parse_rotate(reader: Reader, node: Node) -> Rotate:
    m = settings_of(reader, node, "rotate")
    if m is None:
        reader.error(node, "'rotate' needs 'user', 'passwords' and 'period' or 'requests'")
        return Rotate("")
    user = m.text("user", required=True) or ""
    passwords = m.text_list("passwords")
    if len(passwords) < 2:
        reader.error(m.get("passwords") or m.node, "'rotate' needs at least two 'passwords'")
    schedule = read_schedule(reader, m, node, "rotate", seconds_key="period")
    cycle = m.boolean("cycle", True)
    m.finish()
    return Rotate(user, passwords, schedule, cycle)


LOCKOUT_STATUSES = (403, 407)


@dataclass(frozen=True)
class Lockout:
    failures: int = 3
    seconds: float = 60.0
    status: int = 403


@fault("lockout")
def parse_lockout(reader: Reader, node: Node) -> Lockout:
    m = settings_of(reader, node, "lockout")
    if m is None:
        return Lockout()
    failures = m.integer("failures", 3, minimum=1) or 3
    seconds = m.number("seconds", 60.0, minimum=0) or 0.0
    status = read_int_choice(reader, m, "status", LOCKOUT_STATUSES, 403)
    m.finish()
    return Lockout(failures, seconds, status)


MALFORMED_KINDS = ("unquoted_realm", "unterminated_quote", "unknown_scheme", "unknown_first", "garbage", "empty")


@dataclass(frozen=True)
class ChallengeMalformed:
    kind: str = "unquoted_realm"
    scheme: str = "X-Corp-SSO"  # for unknown_scheme / unknown_first
    value: str = 'Basic realm=="CORP";;, ,=,"'  # for garbage


@fault("challenge_malformed")
def parse_challenge_malformed(reader: Reader, node: Node) -> ChallengeMalformed:
    m = settings_of(reader, node, "challenge_malformed")
    if m is None:
        return ChallengeMalformed()
    default = ChallengeMalformed()
    kind = m.choice("kind", MALFORMED_KINDS, default.kind)
    scheme = m.text("scheme", default.scheme) or default.scheme
    if any(not (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in scheme):
        reader.error(m.get("scheme") or m.node, f"scheme '{scheme}' is not an HTTP token", "letters, digits, - . _")
    value = m.text("value", default.value)
    m.finish()
    return ChallengeMalformed(kind, scheme, default.value if value is None else value)


DROP_POINTS = ("request", "challenge", "success", "after_connect", "response")


@dataclass(frozen=True)
class Drop:
    at: str = "request"
    trigger: Trigger = Trigger()


@fault("drop")
def parse_drop(reader: Reader, node: Node) -> Drop:
    m = settings_of(reader, node, "drop")
    if m is None:
        return Drop()
    at = m.choice("at", DROP_POINTS, "request")
    trigger = read_trigger(reader, m)
    m.finish()
    return Drop(at, trigger)


DELAY_ON = ("challenge", "success", "any")


@dataclass(frozen=True)
class Delay:
    ms: int
    on: str = "any"
    trigger: Trigger = Trigger()


@fault("delay")
def parse_delay(reader: Reader, node: Node) -> Delay:
    m = settings_of(reader, node, "delay")
    if m is None:
        reader.error(node, "'delay' needs 'ms'", "e.g. {ms: 500, on: challenge}")
        return Delay(0)
    ms_node = m.get("ms")
    ms = m.integer("ms", 0, minimum=0) or 0
    if ms_node is None:
        reader.error(m.node, "'delay' needs 'ms'", "e.g. {ms: 500, on: challenge}")
    on = m.choice("on", DELAY_ON, "any")
    trigger = read_trigger(reader, m)
    m.finish()
    return Delay(ms, on, trigger)


BLOCK_STATUSES = (200, 302, 307, 403)


@dataclass(frozen=True)
class BlockPage:
    status: int = 200
    location: str = "http://login.proxy.invalid/"  # for 302/307
    title: str = "Access to this site requires sign-in"
    message: str = (
        "Your request was blocked by the web security gateway because you are not signed in. "
        "Sign in on the corporate login portal, then try again."
    )


@fault("block_page")
def parse_block_page(reader: Reader, node: Node) -> BlockPage:
    m = settings_of(reader, node, "block_page")
    default = BlockPage()
    if m is None:
        return default
    page = BlockPage(
        status=read_int_choice(reader, m, "status", BLOCK_STATUSES, default.status),
        location=m.text("location", default.location) or default.location,
        title=m.text("title", default.title) or default.title,
        message=m.text("message", default.message) or default.message,
    )
    m.finish()
    return page


WRONG_STATUS_HEADERS = ("WWW-Authenticate", "Proxy-Authenticate")


@dataclass(frozen=True)
class WrongStatus:
    status: int = 401
    header: str = "WWW-Authenticate"


@fault("wrong_status")
def parse_wrong_status(reader: Reader, node: Node) -> WrongStatus:
    m = settings_of(reader, node, "wrong_status")
    if m is None:
        return WrongStatus()
    status = read_int_choice(reader, m, "status", (401, 403, 407), 401)
    header = m.choice("header", WRONG_STATUS_HEADERS, "WWW-Authenticate")
    m.finish()
    return WrongStatus(status, header)


HOP_BY_HOP_HEADERS = ("Proxy-Authorization",)


@dataclass(frozen=True)
class HopByHop:
    forward: tuple[str, ...] = ("Proxy-Authorization",)


@fault("hop_by_hop")
def parse_hop_by_hop(reader: Reader, node: Node) -> HopByHop:
    m = settings_of(reader, node, "hop_by_hop")
    if m is None:
        return HopByHop()
    forward = m.choice_list("forward", HOP_BY_HOP_HEADERS, HopByHop.forward)
    m.finish()
    return HopByHop(forward)
