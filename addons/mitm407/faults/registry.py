"""The fault registry: fault name -> ``FaultKind``, and the parser of a scenario's ``faults:`` list.

A scenario lists faults at the top level or per rule, each as a one-key
mapping: ``- expire_after: {requests: 3}``, or a bare name for a fault
without settings. Each fault module defines its ``FaultKind`` values (settings,
parser, behaviour and documentation together) in ``KINDS``; a new fault is one
module plus one line in ``FAULT_MODULES``. Parsing is done once per scenario
load, never per request. ``reference()`` writes the fault table of
docs/faults.md from the registry (``python -m mitm407.faults.registry``).
"""

from __future__ import annotations

import yaml

from mitm407.core.problems import did_you_mean
from mitm407.core.yamlnodes import Node, Reader
from mitm407.faults import always, answers, delay, drop, expiry, hop_by_hop, lockout, rotate
from mitm407.faults.base import NULL_TAG, FaultKind, FaultSpec

__all__ = ["FAULTS", "FaultKind", "FaultSpec", "parse_faults", "reference"]

FAULT_MODULES = (expiry, rotate, lockout, always, answers, drop, delay, hop_by_hop)

FAULTS: dict[str, FaultKind] = {kind.name: kind for module in FAULT_MODULES for kind in module.KINDS}


def parse_faults(reader: Reader, node: Node | None, top_level: bool = False) -> tuple[FaultSpec, ...]:
    """A ``faults:`` list into validated ``FaultSpec`` values; every problem goes to ``reader``."""
    out: list[FaultSpec] = []
    for item in reader.sequence(node, "'faults'"):
        if isinstance(item, yaml.ScalarNode) and item.tag == "tag:yaml.org,2002:str":
            # shorthand for a fault without settings: '- always_407'
            name, key_node, value = item.value, item, yaml.ScalarNode(NULL_TAG, "", item.start_mark, item.end_mark)
        else:
            m = reader.mapping(item, "a fault")
            if m is None:
                continue
            entries = list(m.items())
            if len(entries) != 1:
                reader.error(item, "each fault is a one-key mapping, e.g. '- expire_after: {requests: 3}'")
                continue
            name, key_node, value = entries[0]
        kind = FAULTS.get(name)
        if kind is None:
            reader.error(key_node, f"unknown fault '{name}'", did_you_mean(name, FAULTS))
            continue
        if kind.top_level_only and not top_level:
            reader.error(key_node, f"'{name}' applies to the whole proxy", "list it under the top-level 'faults:'")
            continue
        out.append(FaultSpec(name, kind.parse(reader, value), key_node.start_mark.line + 1))
    return tuple(out)


def reference() -> str:
    """The fault reference in Markdown: per fault, what it reproduces and its settings keys."""
    parts: list[str] = []
    for kind in FAULTS.values():
        where = " Top level only." if kind.top_level_only else ""
        parts.append(f"### `{kind.name}`\n\n{kind.doc}{where}\n")
        if kind.keys:
            rows = "".join(f"| `{k.name}` | {k.type} | {k.default} | {k.doc} |\n" for k in kind.keys)
            parts.append("| key | type | default | meaning |\n|---|---|---|---|\n" + rows)
        else:
            parts.append(f"No settings: `- {kind.name}`.\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
