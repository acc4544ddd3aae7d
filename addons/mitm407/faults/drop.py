"""Fault ``drop``: the connection is reset instead of an answer."""

from __future__ import annotations

from dataclasses import dataclass

from mitm407.core.facts import RequestFacts
from mitm407.core.verdict import Action
from mitm407.core.yamlnodes import Node, Reader
from mitm407.faults.base import (
    TRIGGER_KEYS,
    BuildContext,
    Decision,
    FaultKind,
    Key,
    Pacer,
    Trigger,
    one_of,
    read_trigger,
    settings_of,
)

DROP_POINTS = ("request", "challenge", "success", "after_connect", "response")
# What a drop does at each point: the Decision flag it sets ("tunnel": the engine marks the connection), and why.
DROP_EFFECTS = {
    "request": ("kill", "connection reset instead of any answer"),
    "challenge": ("kill", "connection reset instead of the challenge"),
    "success": ("kill", "connection reset instead of forwarding an authenticated request"),
    "after_connect": ("tunnel", "CONNECT accepted, connection reset at the first request inside the tunnel"),
    "response": ("kill_response", "request forwarded, connection reset instead of relaying the response"),
}


@dataclass(frozen=True)
class DropSettings:
    at: str = "request"
    trigger: Trigger = Trigger()


def parse_drop(reader: Reader, node: Node) -> DropSettings:
    m = settings_of(reader, node, "drop")
    if m is None:
        return DropSettings()
    at = m.choice("at", DROP_POINTS, "request")
    trigger = read_trigger(reader, m)
    m.finish()
    return DropSettings(at, trigger)


class Drop:
    name = "drop"

    def __init__(self, config: DropSettings, context: BuildContext) -> None:
        self.at = config.at
        self.pacer = Pacer(config.trigger)
        self.tunnels = context.tunnels  # shared with the engine, which resets those tunnels

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


DROP = FaultKind(
    name="drop",
    doc=(
        "Resets the client connection with no answer. `at`: `request` (any request), `challenge` (instead "
        "of the 407), `success` (instead of forwarding), `after_connect` (CONNECT gets its 200, the first "
        "request inside the tunnel is reset; needs TLS interception; over HTTP/2 only the stream is reset), "
        "`response` (forwarded, the origin's response is replaced by a reset). Reproduces overloaded or "
        "flaky proxies, load balancers and firewalls that cut connections (idle timeouts, a crashed worker, "
        "a TLS inspection box that gives up): clients must retry or fail with a clear error, never hang."
    ),
    keys=(
        Key("at", one_of(DROP_POINTS), "`request`", "where the connection is reset"),
        *TRIGGER_KEYS,
    ),
    parse=parse_drop,
    build=Drop,
)

KINDS = (DROP,)
