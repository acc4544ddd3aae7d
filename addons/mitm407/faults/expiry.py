"""Faults that make valid credentials stop working on a schedule: ``expire_after`` and ``reauth_every``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mitm407.core.facts import RequestFacts
from mitm407.core.results import Result
from mitm407.core.yamlnodes import Node, Reader
from mitm407.faults.base import (
    BuildContext,
    Decision,
    FaultKind,
    Schedule,
    challenge,
    read_schedule,
    schedule_keys,
    settings_of,
    shown,
)


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


class PerKeySchedule:
    """Where each key (a user) stands on a ``Schedule``: requests counted, or time since its start."""

    def __init__(self, schedule: Schedule, restart: bool) -> None:
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

    def __init__(self, config: ScheduleOnly, context: BuildContext) -> None:
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

    def __init__(self, config: ScheduleOnly, context: BuildContext) -> None:
        self.schedule = PerKeySchedule(config.schedule, restart=True)

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        auth = decision.verdict.auth
        key = auth.user or facts.client_ip
        if auth.result is not Result.OK or not self.schedule.due(key, now):
            return decision
        who = f"user '{shown(auth.user)}'" if auth.user else f"client {key}"
        reason = f"re-authentication of {who} required every {self.schedule.schedule.describe()}"
        return challenge(decision, self.name, reason, Result.STALE)


EXPIRE_AFTER = FaultKind(
    name="expire_after",
    doc=(
        "Per user: after N accepted requests, or T seconds after the first one, the same valid credentials "
        "get a 407 `bad-credentials` (\"credentials of 'U' expired ...\"). Reproduces session or token "
        "lifetimes on authenticating gateways (a Kerberos ticket or an SSO session that runs out, a password "
        "that expired in the directory): long-running clients must notice the 407 in the "
        "middle of a run and either re-authenticate or fail clearly, not loop."
    ),
    keys=schedule_keys(),
    parse=schedule_only("expire_after"),
    build=ExpireAfter,
)

REAUTH_EVERY = FaultKind(
    name="reauth_every",
    doc=(
        "Per user (or client address): after N accepted requests, or T seconds after its first accepted "
        "request (then after each re-challenge), one request gets a 407 marked `stale`; the retry passes. "
        "Reproduces proxies that re-challenge periodically (Digest nonce expiry, Squid's `nonce_max_count` "
        "and `nonce_max_duration`): Digest clients should retry with a new nonce without asking the user, "
        "Basic clients see a plain 407 and must resend their credentials."
    ),
    keys=schedule_keys(),
    parse=schedule_only("reauth_every"),
    build=ReauthEvery,
)

KINDS = (EXPIRE_AFTER, REAUTH_EVERY)
