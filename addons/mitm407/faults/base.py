"""What every fault is made of: its registry entry, the settings readers they share, and the decision they reshape.

A fault module defines, side by side, a frozen settings value, the parser
that reads it from a scenario (once per load) and the behaviour built from it
(per scenario load, with its state), then one ``FaultKind`` per fault name
that ``registry.py`` lists. Pure: no mitmproxy import, time from the caller's
clock, randomness from ``random.Random(seed)``, so every fault is
deterministic and unit-testable. Faults act on the scheme-agnostic values
only (``AuthResult``, ``Verdict``, ``Answer``), so they work for Digest and
NTLM as for Basic.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import yaml

from mitm407.core.answers import Answer
from mitm407.core.credentials import User
from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.verdict import Action, Verdict
from mitm407.core.yamlnodes import Mapping, Node, Reader
from mitm407.wire.terminal import printable

NULL_TAG = "tag:yaml.org,2002:null"
CHALLENGE_HEADERS = ("proxy-authenticate", "www-authenticate")


# -- the registry entry ------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One settings key, for the reference: its type and default as a reader should see them."""

    name: str
    type: str
    default: str
    doc: str


@dataclass(frozen=True)
class BuildContext:
    """What a fault is built from, once per scenario load (besides its settings)."""

    realm: str
    users: MappingABC[str, User]
    tunnels: set[str] = field(default_factory=set)  # connection ids a 'drop: after_connect' resets (engine-owned)


@dataclass(frozen=True)
class FaultKind:
    """A fault name, how its settings are read, how its behaviour is built, and what it reproduces."""

    name: str
    doc: str  # one paragraph: the real-world proxy behaviour it reproduces
    keys: tuple[Key, ...]  # every settings key the parser reads (the reference lists them)
    parse: Callable[[Reader, Node], Any]  # YAML settings -> a frozen value; errors go to the reader
    build: Callable[[Any, BuildContext], Fault]  # that value -> the behaviour, with fresh state
    top_level_only: bool = False  # changes the whole proxy, not one rule's requests

    @classmethod
    def without_settings(cls, name: str, doc: str, build: Callable[[NoSettings, BuildContext], Fault]) -> FaultKind:
        """A fault written as a bare name (``- always_407``) or with an empty mapping."""
        return cls(name, doc, (), no_settings(name), build)


@dataclass(frozen=True)
class FaultSpec:
    """A configured fault: its name, settings and where it was written."""

    name: str
    settings: Any
    line: int


# -- settings readers the faults share --------------------------------------------------


def settings_of(reader: Reader, node: Node, name: str) -> Mapping | None:
    """The fault's settings mapping; None for ``- always_407:`` or ``{}``-less forms."""
    if isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG:
        return None
    return reader.mapping(node, f"'{name}'")


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


@dataclass(frozen=True)
class Schedule:
    """Every N requests or every T seconds (exactly one is set)."""

    requests: int | None = None
    seconds: float | None = None

    def describe(self) -> str:
        if self.requests is not None:
            return f"{self.requests} request{'s' if self.requests != 1 else ''}"
        return f"{self.seconds:g} s"


def schedule_keys(seconds_key: str = "seconds") -> tuple[Key, ...]:
    return (
        Key("requests", "integer ≥ 1", "(one of the two)", f"every N accepted requests (this or '{seconds_key}')"),
        Key(seconds_key, "seconds > 0", "(one of the two)", "every T seconds (this or 'requests')"),
    )


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


TRIGGER_KEYS = (
    Key("every", "integer ≥ 1", "1", "act on every Nth eligible request"),
    Key("probability", "0 to 1", "1", "then act with this probability"),
    Key("seed", "integer", "0", "seed of the random draws, so a run is repeatable"),
)


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


def one_of(choices: tuple[Any, ...]) -> str:
    """A settings type for the reference: ``one of a, b, c``."""
    return "one of " + ", ".join(f"`{c}`" for c in choices)


# -- what faults decide ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fired:
    """One fault that acted on one flow, and why (secret-free)."""

    name: str
    reason: str

    def as_log(self) -> dict[str, str]:
        """The value stored under flow metadata ``mitm407.fault`` (a list of these)."""
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict after the faults, and what the addon must do besides answering."""

    verdict: Verdict
    fired: tuple[Fired, ...] = ()
    kill: bool = False  # reset the client connection now, no answer (drop)
    kill_response: bool = False  # forward, then reset instead of relaying the response
    delay: float = 0.0  # seconds to wait before answering or forwarding
    keep_credentials: bool = False  # forward Proxy-Authorization upstream (hop_by_hop)
    rewrites: tuple[AnswerFault, ...] = ()  # faults that reshape the proxy's answer

    def fire(self, name: str, reason: str, **changes: Any) -> Decision:
        return replace(self, fired=(*self.fired, Fired(name, reason)), **changes)

    def with_verdict(self, action: Action, auth: AuthResult) -> Decision:
        return replace(self, verdict=Verdict(action, auth, self.verdict.rule))


class Fault(Protocol):
    name: str

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision: ...


class AnswerFault(Fault, Protocol):
    def rewrite(self, answer: Answer, facts: RequestFacts) -> tuple[Answer, str]:
        """The changed answer and the reason to record."""
        ...


def refused(auth: AuthResult, reason: str, result: Result | None = None) -> AuthResult:
    """``auth`` turned into a refusal: valid credentials become bad ones, the rest keeps its result."""
    if result is None:
        result = auth.result if not auth.ok else (Result.BAD_CREDENTIALS if auth.user else Result.MISSING)
    headers = auth.headers if result is Result.CONTINUE else ()
    return replace(auth, result=result, reason=reason, headers=headers, via_connection=False)


def shown(user: str | None) -> str:
    return printable(user or "")


def challenge(decision: Decision, name: str, reason: str, result: Result | None = None) -> Decision:
    """Refuse with a 407 whatever the credentials were, recording ``reason``."""
    auth = refused(decision.verdict.auth, f"{reason} (fault {name})", result)
    return decision.with_verdict(Action.CHALLENGE, auth).fire(name, reason)


class Pacer:
    """Applies a ``Trigger``: every Nth eligible request, then a seeded coin toss."""

    def __init__(self, trigger: Trigger) -> None:
        self.trigger = trigger
        self.seen = 0
        self.random = random.Random(trigger.seed)

    def fires(self) -> bool:
        self.seen += 1
        if self.seen % self.trigger.every:
            return False
        return self.trigger.probability >= 1 or self.random.random() < self.trigger.probability


class Settled:
    """Base of the faults whose behaviour is their settings alone (no counters, no clock)."""

    name = ""

    def __init__(self, config: Any, context: BuildContext) -> None:
        self.config = config


class AnswerRewriter(Settled):
    """Base of the faults that act on a challenge answer: register in ``decide``, act in ``rewrite``."""

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        if decision.verdict.action is not Action.CHALLENGE:
            return decision
        return replace(decision, rewrites=(*decision.rewrites, self))


def is_challenge_header(name: str) -> bool:
    return name.lower() in CHALLENGE_HEADERS
