"""What the faults of a scenario do at run time: state, decisions, rewritten answers.

Pure: no mitmproxy import, time from an injected clock, randomness from
``random.Random(seed)``, so every fault is deterministic and unit-testable.
Faults act on the scheme-agnostic values only (``AuthResult``, ``Verdict``,
``Answer``), so they work for Digest and NTLM as for Basic. The addon calls
four places: ``rotated_users`` (before authentication), ``decide`` (after
it), ``rewrite`` (on a built answer) and ``tunnel_request`` (inside an
accepted tunnel); ``Decision`` tells it what to do on forwarding.
"""

from __future__ import annotations

import html
import random
import re
import time
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any, Protocol

from mitm407.core.answers import Answer
from mitm407.core.credentials import Secret, User
from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.faults import settings
from mitm407.gate.authorizer import Action, Verdict
from mitm407.scenario.load import Scenario
from mitm407.schemes.base import printable

CHALLENGE_HEADERS = ("proxy-authenticate", "www-authenticate")


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


# -- authentication faults: they change the verdict ------------------------------------


class Always407:
    name = "always_407"

    def __init__(self, config: settings.NoSettings, scenario: Scenario) -> None:
        pass

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        return challenge(decision, self.name, "every request is refused with 407, whatever its credentials")


class ConnectOnly:
    name = "connect_only"

    def __init__(self, config: settings.NoSettings, scenario: Scenario) -> None:
        pass

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        if facts.is_connect or decision.verdict.action is not Action.CHALLENGE:
            return decision
        reason = "plain HTTP is forwarded without authentication; only CONNECT is challenged"
        auth = AuthResult(Result.BYPASS, f"{reason} (fault {self.name})")
        return decision.with_verdict(Action.FORWARD, auth).fire(self.name, reason)


class PerKeySchedule:
    """Where each key (a user) stands on a ``Schedule``: requests counted, or time since its start."""

    def __init__(self, schedule: settings.Schedule, restart: bool) -> None:
        self.schedule = schedule
        self.restart = restart  # start over once due (reauth) or stay due (expiry)
        self.count: dict[str, int] = {}
        self.start: dict[str, float] = {}

    def due(self, key: str, now: float) -> bool:
        """Count this accepted request; True when the schedule says it must fail."""
        if self.schedule.requests is not None:
            count = self.count.get(key, 0)
            if count < self.schedule.requests:
                self.count[key] = count + 1
                return False
            if self.restart:
                self.count[key] = 0
            return True
        start = self.start.setdefault(key, now)
        if now - start < (self.schedule.seconds or 0):
            return False
        if self.restart:
            self.start[key] = now
        return True


class ExpireAfter:
    """Per user: after N accepted requests (or T seconds after the first), the same credentials fail."""

    name = "expire_after"

    def __init__(self, config: settings.ScheduleOnly, scenario: Scenario) -> None:
        self.schedule = PerKeySchedule(config.schedule, restart=False)

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        auth = decision.verdict.auth
        if auth.result is not Result.OK or not auth.user or not self.schedule.due(auth.user, now):
            return decision
        when = self.schedule.schedule.describe()
        if self.schedule.schedule.requests is not None:
            reason = f"credentials of '{shown(auth.user)}' expired after {when}"
        else:
            reason = f"credentials of '{shown(auth.user)}' expired {when} after their first use"
        return challenge(decision, self.name, reason, Result.BAD_CREDENTIALS)


class ReauthEvery:
    """Per user (or client address): a fresh challenge every N accepted requests or T seconds.

    The refusal is ``stale``: Digest clients then retry with a new nonce
    without asking the user (RFC 7616 §3.3); Basic clients see a plain 407.
    """

    name = "reauth_every"

    def __init__(self, config: settings.ScheduleOnly, scenario: Scenario) -> None:
        self.schedule = PerKeySchedule(config.schedule, restart=True)

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        auth = decision.verdict.auth
        key = auth.user or facts.client_ip
        if auth.result is not Result.OK or not self.schedule.due(key, now):
            return decision
        who = f"user '{shown(auth.user)}'" if auth.user else f"client {key}"
        reason = f"re-authentication of {who} required every {self.schedule.schedule.describe()}"
        return challenge(decision, self.name, reason, Result.STALE)


class Lockout:
    """N consecutive wrong passwords lock the user for T seconds, even with the right one."""

    name = "lockout"

    def __init__(self, config: settings.Lockout, scenario: Scenario) -> None:
        self.config = config
        self.failures: dict[str, int] = {}
        self.locked_until: dict[str, float] = {}

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        auth = decision.verdict.auth
        user = auth.user
        if not user or auth.result not in (Result.OK, Result.BAD_CREDENTIALS):
            return decision
        until = self.locked_until.get(user)
        if until is not None and until > now:
            reason = (
                f"user '{shown(user)}' is locked out for {until - now:.0f} more seconds "
                f"after {self.config.failures} failed logins"
            )
            if self.config.status == 403:
                auth = AuthResult(Result.DENIED, f"{reason} (fault {self.name})", auth.scheme, auth.user)
                return decision.with_verdict(Action.DENY, auth).fire(self.name, reason)
            return challenge(decision, self.name, reason, Result.BAD_CREDENTIALS)
        self.locked_until.pop(user, None)
        if auth.result is Result.OK:
            self.failures.pop(user, None)
            return decision
        failures = self.failures.get(user, 0) + 1
        if failures < self.config.failures:
            self.failures[user] = failures
            return decision
        self.failures.pop(user, None)
        self.locked_until[user] = now + self.config.seconds
        return decision.fire(
            self.name, f"user '{shown(user)}' locked out for {self.config.seconds:g} s after {failures} failed logins"
        )


class Rotate:
    """The valid password of one user changes on a schedule; see ``FaultEngine.rotated_users``."""

    name = "rotate"

    def __init__(self, config: settings.Rotate, scenario: Scenario) -> None:
        self.config = config
        self.accepted = 0  # requests accepted for the user (schedule by requests)
        self.started: float | None = None  # first request seen (schedule by period)
        source = scenario.users.get(config.user)
        self.domain = source.domain if source else ""

    def index(self, now: float) -> int:
        schedule, count = self.config.schedule, len(self.config.passwords)
        if schedule.requests is not None:
            step = self.accepted // schedule.requests
        else:
            if self.started is None:
                self.started = now
            step = int((now - self.started) // (schedule.seconds or 1))
        return step % count if self.config.cycle else min(step, count - 1)

    def user_at(self, index: int) -> User:
        secret = Secret("cleartext", self.config.passwords[index])
        return User(self.config.user, secret, f"fault rotate (password {index + 1})", self.domain)

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        auth = decision.verdict.auth
        if auth.result is Result.OK and auth.user == self.config.user:
            self.accepted += 1
        return decision


# -- transport faults: they change what happens around the answer ------------------------


class Pacer:
    """Applies a ``Trigger``: every Nth eligible request, then a seeded coin toss."""

    def __init__(self, trigger: settings.Trigger) -> None:
        self.trigger = trigger
        self.seen = 0
        self.random = random.Random(trigger.seed)

    def fires(self) -> bool:
        self.seen += 1
        if self.seen % self.trigger.every:
            return False
        return self.trigger.probability >= 1 or self.random.random() < self.trigger.probability


DROP_EFFECTS = {
    "request": ("kill", "connection reset instead of any answer"),
    "challenge": ("kill", "connection reset instead of the challenge"),
    "success": ("kill", "connection reset instead of forwarding an authenticated request"),
    "after_connect": ("tunnel", "CONNECT accepted, connection reset at the first request inside the tunnel"),
    "response": ("kill_response", "request forwarded, connection reset instead of relaying the response"),
}


class Drop:
    name = "drop"

    def __init__(self, config: settings.Drop, scenario: Scenario, tunnels: set[str] | None = None) -> None:
        self.at = config.at
        self.pacer = Pacer(config.trigger)
        self.tunnels = tunnels if tunnels is not None else set()

    def eligible(self, facts: RequestFacts, action: Action) -> bool:
        forwarded = action is Action.FORWARD
        return {
            "request": True,
            "challenge": not forwarded,
            "success": forwarded,
            "after_connect": forwarded and facts.is_connect,
            "response": forwarded and not facts.is_connect,
        }[self.at]

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        if not self.eligible(facts, decision.verdict.action) or not self.pacer.fires():
            return decision
        effect, reason = DROP_EFFECTS[self.at]
        if effect == "tunnel":
            self.tunnels.add(facts.connection_id)
            return decision.fire(self.name, reason)
        return decision.fire(self.name, reason, **{effect: True})


class Delay:
    name = "delay"

    def __init__(self, config: settings.Delay, scenario: Scenario) -> None:
        self.config = config
        self.pacer = Pacer(config.trigger)

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        forwarded = decision.verdict.action is Action.FORWARD
        on = self.config.on
        if (on == "challenge" and forwarded) or (on == "success" and not forwarded) or not self.pacer.fires():
            return decision
        what = "forwarding" if forwarded else "the answer"
        return decision.fire(
            self.name, f"{what} delayed by {self.config.ms} ms", delay=decision.delay + self.config.ms / 1000
        )


class HopByHop:
    name = "hop_by_hop"

    def __init__(self, config: settings.HopByHop, scenario: Scenario) -> None:
        self.forward = config.forward

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        verdict = decision.verdict
        if verdict.action is not Action.FORWARD or verdict.auth.result is not Result.OK or facts.is_connect:
            return decision
        reason = "Proxy-Authorization forwarded upstream instead of being removed (hop-by-hop header leak)"
        return decision.fire(self.name, reason, keep_credentials=True)


# -- answer faults: they reshape the challenge this proxy sends ---------------------------


class AnswerRewriter:
    """Base of the faults that act on a challenge answer: register in ``decide``, act in ``rewrite``."""

    name = ""

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        if decision.verdict.action is not Action.CHALLENGE:
            return decision
        return replace(decision, rewrites=(*decision.rewrites, self))


def is_challenge_header(name: str) -> bool:
    return name.lower() in CHALLENGE_HEADERS


class ChallengeMissing(AnswerRewriter):
    name = "challenge_missing"

    def __init__(self, config: settings.NoSettings, scenario: Scenario) -> None:
        pass

    def rewrite(self, answer: Answer, facts: RequestFacts) -> tuple[Answer, str]:
        headers = tuple(h for h in answer.headers if not is_challenge_header(h[0]))
        return replace(answer, headers=headers), f"{answer.status} sent without any challenge header (RFC 9110 §15.5.8)"


QUOTED_REALM = re.compile(r'realm="((?:[^"\\]|\\.)*)"', re.IGNORECASE)


class ChallengeMalformed(AnswerRewriter):
    name = "challenge_malformed"

    def __init__(self, config: settings.ChallengeMalformed, scenario: Scenario) -> None:
        self.config = config
        realm = scenario.realm.replace("\\", "\\\\").replace('"', '\\"')
        self.unknown = f'{config.scheme} realm="{realm}"'

    def malform(self, values: list[str]) -> list[str]:
        kind = self.config.kind
        if kind == "unquoted_realm":
            return [QUOTED_REALM.sub(lambda m: "realm=" + m.group(1), v) for v in values]
        if kind == "unterminated_quote":
            return [QUOTED_REALM.sub(lambda m: 'realm="' + m.group(1), v) for v in values]
        if kind == "unknown_scheme":
            return [self.unknown]
        if kind == "unknown_first":
            return [self.unknown, *values]
        if kind == "garbage":
            return [self.config.value]
        return [""]  # empty

    def rewrite(self, answer: Answer, facts: RequestFacts) -> tuple[Answer, str]:
        names = [k for k, _ in answer.headers if is_challenge_header(k)]
        name = names[0] if names else ("Proxy-Authenticate" if answer.status == 407 else "WWW-Authenticate")
        values = [v for k, v in answer.headers if is_challenge_header(k)]
        others = tuple(h for h in answer.headers if not is_challenge_header(h[0]))
        malformed = tuple((name, v) for v in self.malform(values))
        reason = f"challenge malformed ({self.config.kind.replace('_', ' ')})"
        return replace(answer, headers=malformed + others), reason


class CloseOn407(AnswerRewriter):
    name = "close_on_407"

    def __init__(self, config: settings.NoSettings, scenario: Scenario) -> None:
        pass

    def rewrite(self, answer: Answer, facts: RequestFacts) -> tuple[Answer, str]:
        return replace(answer, close=True), f"connection closed after the {answer.status} (Connection: close)"


BLOCK_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
<p>{message}</p>
<p>Requested: {target}</p>
<p>Sign-in portal: <a href="{location}">{location}</a></p>
</body>
</html>
"""


class BlockPage(AnswerRewriter):
    """A web-filter style HTML page instead of the 407 (a CONNECT gets 403: a 2xx would open the tunnel)."""

    name = "block_page"

    def __init__(self, config: settings.BlockPage, scenario: Scenario) -> None:
        self.config = config

    def rewrite(self, answer: Answer, facts: RequestFacts) -> tuple[Answer, str]:
        config = self.config
        status = 403 if facts.is_connect and config.status < 300 else config.status
        body = BLOCK_PAGE.format(
            title=html.escape(config.title),
            message=html.escape(config.message),
            target=html.escape(facts.target if facts.is_connect else f"{facts.host}:{facts.port}{facts.path}"),
            location=html.escape(config.location, quote=True),
        )
        headers: tuple[tuple[str, str], ...] = (
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
        )
        if status in (302, 307):
            headers += (("Location", config.location),)
        page = Answer(status, headers, body, HTTPStatus(status).phrase, answer.close)
        return page, f"HTML block page with status {status} instead of the {answer.status}"


class WrongStatus(AnswerRewriter):
    name = "wrong_status"

    def __init__(self, config: settings.WrongStatus, scenario: Scenario) -> None:
        self.config = config

    def rewrite(self, answer: Answer, facts: RequestFacts) -> tuple[Answer, str]:
        status, header = self.config.status, self.config.header
        headers = tuple((header if is_challenge_header(k) else k, v) for k, v in answer.headers)
        phrase = HTTPStatus(status).phrase
        body = answer.body.replace(f"{answer.status} {answer.reason_phrase}", f"{status} {phrase}", 1)
        for name in ("Proxy-Authenticate:", "WWW-Authenticate:"):
            body = body.replace(name, f"{header}:")
        reason = f"{status} with {header} instead of {answer.status}"
        return replace(answer, status=status, headers=headers, body=body, reason=phrase), reason


FAULT_TYPES: dict[str, Callable[[Any, Scenario], Fault]] = {
    "always_407": Always407,
    "connect_only": ConnectOnly,
    "expire_after": ExpireAfter,
    "reauth_every": ReauthEvery,
    "lockout": Lockout,
    "rotate": Rotate,
    "drop": Drop,
    "delay": Delay,
    "hop_by_hop": HopByHop,
    "challenge_missing": ChallengeMissing,
    "challenge_malformed": ChallengeMalformed,
    "close_on_407": CloseOn407,
    "block_page": BlockPage,
    "wrong_status": WrongStatus,
}


class FaultEngine:
    """The faults of one scenario load, with their state (counters, locks, rotations)."""

    def __init__(self, scenario: Scenario, clock: Callable[[], float] = time.monotonic) -> None:
        self.scenario = scenario
        self.clock = clock
        self.tunnels: set[str] = set()  # connection ids whose tunnel a 'drop: after_connect' resets
        self.top = tuple(self.build(spec) for spec in scenario.faults)
        self.by_rule = {
            rule.index: tuple(self.build(spec) for spec in rule.faults) for rule in scenario.rules.rules if rule.faults
        }
        self.rotations = tuple(f for f in self.top if isinstance(f, Rotate))
        self._indices: tuple[int, ...] | None = None
        self._pending: tuple[Fired, ...] = ()

    def build(self, spec: settings.FaultSpec) -> Fault:
        if spec.name == "drop":
            return Drop(spec.settings, self.scenario, self.tunnels)
        return FAULT_TYPES[spec.name](spec.settings, self.scenario)

    @property
    def active(self) -> bool:
        return bool(self.top or self.by_rule)

    def rotated_users(self) -> MappingABC[str, User] | None:
        """Before authentication: the user table when a rotation moved on (rebuild the schemes), else None."""
        if not self.rotations:
            return None
        now = self.clock()
        indices = tuple(r.index(now) for r in self.rotations)
        if indices == self._indices:
            return None
        if self._indices is not None:
            self._pending += tuple(
                Fired("rotate", f"password of '{shown(r.config.user)}' rotated: password {i + 1} of "
                      f"{len(r.config.passwords)} is now the valid one")
                for r, i, old in zip(self.rotations, indices, self._indices, strict=True)
                if i != old
            )
        self._indices = indices
        users = dict(self.scenario.users)
        for rotation, index in zip(self.rotations, indices, strict=True):
            users[rotation.config.user] = rotation.user_at(index)
        return users

    def decide(self, facts: RequestFacts, verdict: Verdict) -> Decision:
        """After authentication: every fault of the rule, then the scenario's, in the order written."""
        if not self._pending and not self.top and not self.by_rule:
            return Decision(verdict)  # a scenario without faults: nothing to look at per request
        decision = Decision(verdict, self._pending)
        self._pending = ()
        faults = self.top if verdict.rule is None else self.by_rule.get(verdict.rule.index, ()) + self.top
        if not faults:
            return decision
        now = self.clock()
        for fault in faults:
            decision = fault.decide(facts, decision, now)
        return decision

    def rewrite(self, answer: Answer, decision: Decision, facts: RequestFacts) -> tuple[Answer, tuple[Fired, ...]]:
        """On the built answer: apply the answer faults the decision collected."""
        fired: list[Fired] = []
        for fault in decision.rewrites:
            answer, reason = fault.rewrite(answer, facts)
            fired.append(Fired(fault.name, reason))
        return answer, tuple(fired)

    def tunnel_request(self, connection_id: str) -> Fired | None:
        """Inside an accepted tunnel: reset it here if a 'drop: after_connect' marked it."""
        if connection_id not in self.tunnels:
            return None
        self.tunnels.discard(connection_id)
        return Fired("drop", DROP_EFFECTS["after_connect"][1])

    def connection_closed(self, connection_id: str) -> None:
        self.tunnels.discard(connection_id)
