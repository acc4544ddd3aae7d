"""Faults that refuse or wave through whole classes of requests: ``always_407`` and ``connect_only``."""

from __future__ import annotations

from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.verdict import Action
from mitm407.faults.base import Decision, FaultKind, Settled, challenge


class Always407(Settled):
    name = "always_407"

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        return challenge(decision, self.name, "every request is refused with 407, whatever its credentials")


class ConnectOnly(Settled):
    name = "connect_only"

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        if facts.is_connect or decision.verdict.action is not Action.CHALLENGE:
            return decision
        reason = "plain HTTP is forwarded without authentication; only CONNECT is challenged"
        auth = AuthResult(Result.BYPASS, f"{reason} (fault {self.name})")
        return decision.with_verdict(Action.FORWARD, auth).fire(self.name, reason)


ALWAYS_407 = FaultKind.without_settings(
    "always_407",
    (
        "Every request gets a 407, valid credentials included. Reproduces a proxy whose authentication "
        "backend is down or misconfigured (an LDAP bind that fails, a broken keytab, an expired service "
        "account): it keeps challenging, and clients that retry forever or prompt again and again show it."
    ),
    Always407,
)

CONNECT_ONLY = FaultKind.without_settings(
    "connect_only",
    (
        "Plain HTTP requests are forwarded without authentication; only CONNECT is challenged. Reproduces "
        "proxies configured to require credentials for HTTPS tunnels only, where a client that sends "
        "credentials preemptively on every request, or only after a first 407, behaves differently for "
        "http:// and https:// URLs."
    ),
    ConnectOnly,
)

KINDS = (ALWAYS_407, CONNECT_ONLY)
