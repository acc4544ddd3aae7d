"""Decide one request: which rule applies, and do its credentials pass.

Built once per scenario load (schemes instantiated, caches empty); the addon
calls ``evaluate`` per request. Pure with respect to mitmproxy: it sees only
``RequestFacts`` and header values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .facts import RequestFacts
from .results import AuthResult, Result
from .rules import Outcome, Rule
from .scenario import Scenario
from .schemes import spec_for
from .schemes.base import Scheme, SchemeContext, printable, split_authorization


class Action(StrEnum):
    FORWARD = "forward"
    CHALLENGE = "challenge"  # 407 (401 in reverse mode) with the schemes' challenges
    DENY = "deny"  # 403 from this proxy


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    auth: AuthResult
    rule: Rule | None


class Authorizer:
    def __init__(self, scenario: Scenario, clock: Callable[[], float] = time.monotonic) -> None:
        self.scenario = scenario
        self.schemes: tuple[Scheme, ...] = tuple(
            spec_for(name).build(
                SchemeContext(
                    realm=scenario.realm,
                    users=scenario.users,
                    options=scenario.scheme_options.get(name),
                    cache_ttl=scenario.cache.ttl,
                    cache_size=scenario.cache.max_entries,
                    clock=clock,
                )
            )
            for name in scenario.schemes
        )
        self._by_token = {s.token.lower(): s for s in self.schemes}
        self._offered = ", ".join(s.token for s in self.schemes)

    def evaluate(self, facts: RequestFacts, authorizations: Sequence[str], header: str) -> Verdict:
        """Apply the first matching rule (or the default) and check credentials if needed."""
        rule = self.scenario.rules.find(facts)
        outcome = rule.outcome if rule else self.scenario.rules.default
        where = rule.label if rule else "the default"
        if outcome is Outcome.NONE:
            return Verdict(Action.FORWARD, AuthResult(Result.BYPASS, f"no authentication needed ({where})"), rule)
        if outcome is Outcome.DENY:
            return Verdict(Action.DENY, AuthResult(Result.DENIED, f"denied by {where}"), rule)
        result = self.authenticate(facts, authorizations, header)
        return Verdict(Action.FORWARD if result.ok else Action.CHALLENGE, result, rule)

    def authenticate(self, facts: RequestFacts, authorizations: Sequence[str], header: str) -> AuthResult:
        """Check the first credentials whose scheme is offered."""
        if not authorizations:
            return AuthResult(Result.MISSING, f"no {header} header")
        first_token = ""
        for value in authorizations:
            token, credentials = split_authorization(value)
            scheme = self._by_token.get(token)
            if scheme is not None:
                return scheme.verify(credentials, facts)
            first_token = first_token or token
        if not first_token:
            return AuthResult(Result.MALFORMED, f"empty {header} header")
        return AuthResult(
            Result.MALFORMED, f"scheme '{printable(first_token, 20)}' is not offered (offered: {self._offered})"
        )

    def wants_body(self, authorizations: Sequence[str]) -> bool:
        """Does the scheme that will check these credentials need the request body?

        Digest ``qop=auth-int`` hashes the body, which ``requestheaders`` has
        not read yet: the addon then decides in the ``request`` hook instead.
        """
        for value in authorizations:
            token, credentials = split_authorization(value)
            scheme = self._by_token.get(token)
            if scheme is not None:
                wants_body = getattr(scheme, "wants_body", None)
                return bool(wants_body and wants_body(credentials))
        return False

    def challenges(self, facts: RequestFacts, stale: bool = False) -> list[str]:
        """Every scheme's challenges, in the scenario's order."""
        return [c for scheme in self.schemes for c in scheme.challenges(facts, stale)]

    def challenges_of(self, name: str, facts: RequestFacts, stale: bool = False) -> list[str]:
        """One scheme's challenges (a response shape places each scheme itself); [] if not offered."""
        return next((s.challenges(facts, stale) for s in self.schemes if s.name == name), [])

    def connection_closed(self, connection_id: str) -> None:
        for scheme in self.schemes:
            scheme.connection_closed(connection_id)
