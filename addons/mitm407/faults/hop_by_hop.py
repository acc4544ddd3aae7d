"""Fault ``hop_by_hop``: accepted credentials leak upstream instead of being removed."""

from __future__ import annotations

from dataclasses import dataclass

from mitm407.core.facts import RequestFacts
from mitm407.core.results import Result
from mitm407.core.verdict import Action
from mitm407.core.yamlnodes import Node, Reader
from mitm407.faults.base import BuildContext, Decision, FaultKind, Key, one_of, settings_of

HOP_BY_HOP_HEADERS = ("Proxy-Authorization",)


@dataclass(frozen=True)
class HopByHopSettings:
    forward: tuple[str, ...] = ("Proxy-Authorization",)


def parse_hop_by_hop(reader: Reader, node: Node) -> HopByHopSettings:
    m = settings_of(reader, node, "hop_by_hop")
    if m is None:
        return HopByHopSettings()
    forward = m.choice_list("forward", HOP_BY_HOP_HEADERS, HopByHopSettings.forward)
    m.finish()
    return HopByHopSettings(forward)


class HopByHop:
    name = "hop_by_hop"

    def __init__(self, config: HopByHopSettings, context: BuildContext) -> None:
        self.forward = config.forward

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        verdict = decision.verdict
        if verdict.action is not Action.FORWARD or verdict.auth.result is not Result.OK or facts.is_connect:
            return decision
        reason = "Proxy-Authorization forwarded upstream instead of being removed (hop-by-hop header leak)"
        return decision.fire(self.name, reason, keep_credentials=True)


HOP_BY_HOP = FaultKind(
    name="hop_by_hop",
    doc=(
        "Accepted credentials are forwarded upstream instead of removed: a deliberate leak, for leak "
        "detectors. Reproduces proxies that fail to strip the hop-by-hop `Proxy-Authorization` header "
        "(RFC 9110 §11.7.2: it applies only to the next inbound proxy that demanded authentication), so "
        "the user's proxy password reaches the origin server and its logs."
    ),
    keys=(Key("forward", f"list, {one_of(HOP_BY_HOP_HEADERS)}", "`[Proxy-Authorization]`", "headers to leak"),),
    parse=parse_hop_by_hop,
    build=HopByHop,
)

KINDS = (HOP_BY_HOP,)
