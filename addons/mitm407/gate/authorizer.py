"""Decide one request: which rule applies, and do its credentials pass.

Built once per scenario load (schemes instantiated, caches empty); the gate
(``gate/gate.py``) calls ``evaluate`` per request. Pure with respect to
mitmproxy: it sees only ``RequestFacts`` and header values. The schemes read
their users from one ``UserDirectory``: a fault ``rotate`` swaps users there
(``replace_users``) instead of building new schemes, so Digest nonces and
NTLM handshakes survive a rotation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.rules import Outcome, Rule
from mitm407.core.users import UserDirectory
from mitm407.core.verdict import Action, Verdict  # re-exported: the gate's callers import them from here
from mitm407.scenario.load import Scenario
from mitm407.schemes import spec_for
from mitm407.schemes.base import Scheme, SchemeContext, SlowSecretScheme
from mitm407.wire.authparams import split_authorization
from mitm407.wire.terminal import printable


@dataclass(frozen=True, slots=True)
class SlowCheck:
    """A slow password check (bcrypt) ``verify`` would run: the addon runs it off the event loop."""

    scheme: SlowSecretScheme
    credentials: str = field(repr=False)  # the token after the scheme name: never logged


class Authorizer:
    def __init__(self, scenario: Scenario, clock: Callable[[], float] = time.monotonic) -> None:
        self.scenario = scenario
        self.users = UserDirectory(scenario.users)
        self.schemes: tuple[Scheme, ...] = tuple(
            spec_for(name).build(
                SchemeContext(
                    realm=scenario.realm,
                    users=self.users,
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
        # Only a scheme with slow secrets (Basic with bcrypt users) can have a slow check pending.
        self.has_slow_secrets = any(getattr(s, "has_slow_secrets", False) for s in self.schemes)
        self.users.watch(self._users_changed)
        # Only a scheme with ``wants_body`` (Digest: qop=auth-int) can need the body to decide.
        self.may_want_body = any(getattr(s, "wants_body", None) for s in self.schemes)

    def _users_changed(self, names: frozenset[str]) -> None:
        # after the schemes (they watch first): a rotation may add or remove a bcrypt user
        self.has_slow_secrets = any(getattr(s, "has_slow_secrets", False) for s in self.schemes)

    def evaluate(self, facts: RequestFacts, authorizations: Sequence[str], header: str) -> Verdict:
        """Apply the first matching rule (or the default) and check credentials if needed."""
        rule, outcome = self.rule_for(facts)
        where = rule.label if rule else "the default"
        if outcome is Outcome.NONE:
            return Verdict(Action.FORWARD, AuthResult(Result.BYPASS, f"no authentication needed ({where})"), rule)
        if outcome is Outcome.DENY:
            return Verdict(Action.DENY, AuthResult(Result.DENIED, f"denied by {where}"), rule)
        result = self.authenticate(facts, authorizations, header)
        return Verdict(Action.FORWARD if result.ok else Action.CHALLENGE, result, rule)

    def rule_for(self, facts: RequestFacts) -> tuple[Rule | None, Outcome]:
        """The first matching rule (None: the default) and what it asks for."""
        rule = self.scenario.rules.find(facts)
        return rule, rule.outcome if rule else self.scenario.rules.default

    def authenticate(self, facts: RequestFacts, authorizations: Sequence[str], header: str) -> AuthResult:
        """Check the first credentials whose scheme is offered."""
        if not authorizations:
            return AuthResult(Result.MISSING, f"no {header} header")
        found = self.scheme_for(authorizations)
        if found is not None:
            return found[0].verify(found[1], facts)
        first_token = next((token for token, _ in map(split_authorization, authorizations) if token), "")
        if not first_token:
            return AuthResult(Result.MALFORMED, f"empty {header} header")
        return AuthResult(
            Result.MALFORMED, f"scheme '{printable(first_token, 20)}' is not offered (offered: {self._offered})"
        )

    def scheme_for(self, authorizations: Sequence[str]) -> tuple[Scheme, str] | None:
        """The scheme ``authenticate`` would ask, and its credentials: the first value whose scheme is offered."""
        for value in authorizations:
            token, credentials = split_authorization(value)
            scheme = self._by_token.get(token)
            if scheme is not None:
                return scheme, credentials
        return None

    def wants_body(self, authorizations: Sequence[str]) -> bool:
        """Does the scheme that will check these credentials need the request body?

        Digest ``qop=auth-int`` hashes the body, which ``requestheaders`` has
        not read yet: the addon then decides in the ``request`` hook instead.
        """
        found = self.scheme_for(authorizations) if self.may_want_body else None
        if found is None:
            return False
        wants_body = getattr(found[0], "wants_body", None)
        return bool(wants_body and wants_body(found[1]))

    def slow_check(self, authorizations: Sequence[str], facts: Callable[[], RequestFacts]) -> SlowCheck | None:
        """The slow hash ``evaluate`` would run for these credentials, if any (not cached yet).

        bcrypt takes ~50 ms of CPU; on the event loop it would stall every
        other request. The addon runs it in a worker thread, caches the
        result in the scheme, then decides as usual (a cache hit). ``facts``
        is called only when a check is pending, to see whether the request's
        rule asks for credentials at all (a bypass or deny rule checks none).
        """
        if not self.has_slow_secrets:
            return None
        found = self.scheme_for(authorizations)
        if found is None or not getattr(found[0], "has_slow_secrets", False):
            return None
        scheme = cast(SlowSecretScheme, found[0])
        if not scheme.slow_check_pending(found[1]) or self.rule_for(facts())[1] is not Outcome.REQUIRED:
            return None
        return SlowCheck(scheme, found[1])

    def challenges(self, facts: RequestFacts, stale: bool = False) -> list[str]:
        """Every scheme's challenges, in the scenario's order."""
        return [c for scheme in self.schemes for c in scheme.challenges(facts, stale)]

    def challenges_of(self, name: str, facts: RequestFacts, stale: bool = False) -> list[str]:
        """One scheme's challenges (a response shape places each scheme itself); [] if not offered."""
        return next((s.challenges(facts, stale) for s in self.schemes if s.name == name), [])

    def connection_closed(self, connection_id: str) -> None:
        for scheme in self.schemes:
            scheme.connection_closed(connection_id)
