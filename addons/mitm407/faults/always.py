"""Faults that refuse or wave through whole classes of requests: ``always_407`` and ``connect_only``."""

from __future__ import annotations

from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.verdict import Action
from mitm407.faults.base import BuildContext, Decision, FaultKind, NoSettings, challenge, no_settings


class Always407:
    name = "always_407"

    def __init__(self, config: NoSettings, context: BuildContext) -> None:
        pass

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        return challenge(decision, self.name, "every request is refused with 407, whatever its credentials")


class ConnectOnly:
    name = "connect_only"

    def __init__(self, config: NoSettings, context: BuildContext) -> None:
        pass

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        if facts.is_connect or decision.verdict.action is not Action.CHALLENGE:
            return decision
        reason = "plain HTTP is forwarded without authentication; only CONNECT is challenged"
        auth = AuthResult(Result.BYPASS, f"{reason} (fault {self.name})")
        return decision.with_verdict(Action.FORWARD, auth).fire(self.name, reason)


ALWAYS_407 = FaultKind(
    name="always_407",
    doc=(
        "Every request gets a 407, valid credentials included. Reproduces a proxy whose authentication "
        "backend is down or misconfigured (an LDAP bind that fails, a broken keytab, an expired service "
        "account): it keeps challenging, and clients that retry forever or prompt again and again show it."
    ),
    keys=(),
    parse=no_settings("always_407"),
    build=Always407,
)

CONNECT_ONLY = FaultKind(
    name="connect_only",
    doc=(
        "Plain HTTP requests are forwarded without authentication; only CONNECT is challenged. Reproduces "
        "proxies configured to require credentials for HTTPS tunnels only, where a client that sends "
        "credentials preemptively on every request, or only after a first 407, behaves differently for "
        "http:// and https:// URLs."
    ),
    keys=(),
    parse=no_settings("connect_only"),
    build=ConnectOnly,
)

KINDS = (ALWAYS_407, CONNECT_ONLY)
