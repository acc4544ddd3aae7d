"""Fault ``delay``: the proxy waits before answering or forwarding."""

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

DELAY_ON = ("challenge", "success", "any")


@dataclass(frozen=True)
class DelaySettings:
    ms: int
    on: str = "any"
    trigger: Trigger = Trigger()


def parse_delay(reader: Reader, node: Node) -> DelaySettings:
    m = settings_of(reader, node, "delay")
    if m is None:
        reader.error(node, "'delay' needs 'ms'", "e.g. {ms: 500, on: challenge}")
        return DelaySettings(0)
    ms_node = m.get("ms")
    ms = m.integer("ms", 0, minimum=0) or 0
    if ms_node is None:
        reader.error(m.node, "'delay' needs 'ms'", "e.g. {ms: 500, on: challenge}")
    on = m.choice("on", DELAY_ON, "any")
    trigger = read_trigger(reader, m)
    m.finish()
    return DelaySettings(ms, on, trigger)


class Delay:
    name = "delay"

    def __init__(self, config: DelaySettings, context: BuildContext) -> None:
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


DELAY = FaultKind(
    name="delay",
    doc=(
        "Waits before answering or forwarding, without blocking other connections (`asyncio.sleep`). "
        "Reproduces slow authentication backends (an LDAP or Kerberos round trip that takes seconds, a "
        "saturated auth helper pool) and slow proxies: clients with tight connect or read timeouts, or "
        "that fire several requests while the first 407 is pending, show their races here."
    ),
    keys=(
        Key("ms", "integer ≥ 0", "(required)", "milliseconds to wait"),
        Key("on", one_of(DELAY_ON), "`any`", "delay only challenges, only forwarded requests, or both"),
        *TRIGGER_KEYS,
    ),
    parse=parse_delay,
    build=Delay,
)

KINDS = (DELAY,)
