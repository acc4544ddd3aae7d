"""Faults injected on top of correct authentication (expiry, rotation, ...).

A scenario lists faults at the top level or per rule, each as a one-key
mapping: ``- expire_after: {requests: 3}``. ``FAULT_PARSERS`` maps a fault
name to the function that validates its settings; a fault is one entry there
plus its runtime behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .problems import did_you_mean
from .yamlnodes import Node, Reader


@dataclass(frozen=True)
class FaultSpec:
    """A configured fault: its name, settings and where it was written."""

    name: str
    settings: Any
    line: int


FAULT_PARSERS: dict[str, Callable[[Reader, Node], Any]] = {}


def parse_faults(reader: Reader, node: Node | None) -> tuple[FaultSpec, ...]:
    out: list[FaultSpec] = []
    for item in reader.sequence(node, "'faults'"):
        m = reader.mapping(item, "a fault")
        if m is None:
            continue
        entries = list(m.items())
        if len(entries) != 1:
            reader.error(item, "each fault is a one-key mapping, e.g. '- expire_after: {requests: 3}'")
            continue
        name, key_node, value = entries[0]
        parser = FAULT_PARSERS.get(name)
        if parser is None:
            reader.error(key_node, f"unknown fault '{name}'", did_you_mean(name, FAULT_PARSERS))
            continue
        out.append(FaultSpec(name, parser(reader, value), key_node.start_mark.line + 1))
    return tuple(out)
