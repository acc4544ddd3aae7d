"""What the faults of a scenario do at run time: their state, the decisions, the rewritten answers.

The addon (or the gate) calls four places: ``rotated_users`` (before
authentication), ``decide`` (after it), ``rewrite`` (on a built answer) and
``tunnel_request`` (inside an accepted tunnel); ``Decision`` tells it what to
do on forwarding. Each fault's behaviour is built from the registry, so the
engine knows no fault by name except the two it has duties for: ``rotate``
(the user table) and ``drop`` (tunnels to reset).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from typing import Protocol

from mitm407.core.answers import Answer
from mitm407.core.credentials import User
from mitm407.core.facts import RequestFacts
from mitm407.core.rules import Rules
from mitm407.core.verdict import Verdict
from mitm407.faults.base import BuildContext, Decision, Fault, FaultSpec, Fired, shown
from mitm407.faults.drop import DROP_EFFECTS
from mitm407.faults.registry import FAULTS
from mitm407.faults.rotate import Rotate

__all__ = ["Decision", "FaultEngine", "Fired"]


class FaultScenario(Protocol):
    """What the engine reads of a ``Scenario`` (the faults package sits below the scenario package)."""

    @property
    def realm(self) -> str: ...

    @property
    def users(self) -> MappingABC[str, User]: ...

    @property
    def rules(self) -> Rules: ...

    @property
    def faults(self) -> tuple[FaultSpec, ...]: ...


class FaultEngine:
    """The faults of one scenario load, with their state (counters, locks, rotations)."""

    def __init__(self, scenario: FaultScenario, clock: Callable[[], float] = time.monotonic) -> None:
        self.scenario = scenario
        self.clock = clock
        self.context = BuildContext(scenario.realm, scenario.users)
        self.tunnels = self.context.tunnels  # connection ids whose tunnel a 'drop: after_connect' resets
        self.top = tuple(self.build(spec) for spec in scenario.faults)
        self.by_rule = {
            rule.index: tuple(self.build(spec) for spec in rule.faults) for rule in scenario.rules.rules if rule.faults
        }
        self.rotations = tuple(f for f in self.top if isinstance(f, Rotate))
        self._indices: tuple[int, ...] | None = None
        self._pending: tuple[Fired, ...] = ()

    def build(self, spec: FaultSpec) -> Fault:
        return FAULTS[spec.name].build(spec.settings, self.context)

    @property
    def active(self) -> bool:
        return bool(self.top or self.by_rule)

    def advance_rotations(self) -> list[str]:
        """Every ``rotate`` fault moves to its next password now (control API); returns the users concerned."""
        for rotation in self.rotations:
            rotation.advance()
        return [rotation.config.user for rotation in self.rotations]

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
