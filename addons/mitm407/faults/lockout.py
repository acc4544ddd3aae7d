"""Fault ``lockout``: N consecutive wrong passwords lock the account for a while."""

from __future__ import annotations

from dataclasses import dataclass

from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.verdict import Action
from mitm407.core.yamlnodes import Node, Reader
from mitm407.faults.base import (
    BuildContext,
    Decision,
    FaultKind,
    Key,
    challenge,
    one_of,
    read_int_choice,
    settings_of,
    shown,
)

LOCKOUT_STATUSES = (403, 407)


@dataclass(frozen=True)
class LockoutSettings:
    failures: int = 3
    seconds: float = 60.0
    status: int = 403


def parse_lockout(reader: Reader, node: Node) -> LockoutSettings:
    m = settings_of(reader, node, "lockout")
    default = LockoutSettings()
    if m is None:
        return default
    failures = m.integer("failures", default.failures, minimum=1) or default.failures
    seconds = m.number("seconds", default.seconds, minimum=0) or 0.0
    status = read_int_choice(reader, m, "status", LOCKOUT_STATUSES, default.status)
    m.finish()
    return LockoutSettings(failures, seconds, status)


class Lockout:
    """N consecutive wrong passwords lock the user for T seconds, even with the right one."""

    name = "lockout"

    def __init__(self, config: LockoutSettings, context: BuildContext) -> None:
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


LOCKOUT = FaultKind(
    name="lockout",
    doc=(
        "N consecutive wrong passwords lock the user for T seconds; while locked even the right password "
        "gets 403 Forbidden (no challenge) or a 407, with \"user 'U' is locked out for S more seconds after "
        "N failed logins\". Success resets the count. Reproduces the account lockout policy of the directory "
        "behind most corporate proxies (Active Directory's lockout threshold): a client that retries a stale "
        "password in a loop locks its user out, and a 403 without a challenge is what it then meets."
    ),
    keys=(
        Key("failures", "integer ≥ 1", "3", "consecutive wrong passwords that lock the user"),
        Key("seconds", "seconds ≥ 0", "60", "how long the lock lasts"),
        Key("status", one_of(LOCKOUT_STATUSES), "403", "the answer while locked: 403 without a challenge, or 407"),
    ),
    parse=parse_lockout,
    build=Lockout,
)

KINDS = (LOCKOUT,)
