"""Summaries of hop-log records: flows per hop, status, auth result, error, finding.

Pure: fed one record (a dict, as written to the hop log) at a time, so the
addon keeps a running summary for its exit report and ``mitm407 report``
builds the same one from a file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mitm407.hoplog.attribution import answering_upstream, upstream_identity
from mitm407.wire.terminal import escape_controls

UPSTREAM = "upstream-proxy"


class HopSummary:
    """Running counters over hop-log records."""

    def __init__(self) -> None:
        self.flows = 0
        self.bad_lines = 0
        # (kind, hop); an upstream proxy this hop talks to is keyed by its address and shown by its name
        self.answered_by: Counter[tuple[str, str]] = Counter()
        self.upstream_names: dict[str, str] = {}  # address -> the name it gave (Proxy-Status, Via)
        self.status: Counter[str] = Counter()
        self.auth: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.findings: Counter[str] = Counter()

    def add(self, record: Mapping[str, Any]) -> None:
        self.flows += 1
        answered = record.get("answered_by")
        answered = answered if isinstance(answered, Mapping) else {}  # a hand-edited log: counted, not fatal
        identity = upstream_identity(record)
        if identity is not None and identity.name:
            self.upstream_names.setdefault(identity.address, identity.name)
        by_address = answering_upstream(record, identity)
        if by_address is not None:
            self.answered_by[(UPSTREAM, by_address.address)] += 1
        else:
            self.answered_by[(str(answered.get("kind", "none")), str(answered.get("hop", "")))] += 1
        status = record.get("status")
        self.status[str(status) if status is not None else "none"] += 1
        auth = record.get("auth")
        self.auth[str(auth.get("result")) if isinstance(auth, Mapping) else "not-checked"] += 1
        error = record.get("error")
        if isinstance(error, Mapping) and error.get("type"):
            self.errors[str(error["type"])] += 1
        findings = record.get("findings")
        for finding in findings if isinstance(findings, list) else ():
            if isinstance(finding, Mapping):
                self.findings[str(finding.get("kind", "unknown"))] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "flows": self.flows,
            "bad_lines": self.bad_lines,
            "answered_by": [self._answered_row(kind, hop, n) for (kind, hop), n in sorted(self.answered_by.items())],
            "status": dict(sorted(self.status.items())),
            "auth": dict(sorted(self.auth.items())),
            "errors": dict(sorted(self.errors.items())),
            "findings": dict(sorted(self.findings.items())),
        }


    def _answered_row(self, kind: str, hop: str, flows: int) -> dict[str, Any]:
        """One row; an upstream known by its address carries ``address`` and is shown by its name."""
        if kind == UPSTREAM and hop in self.upstream_names:
            return {"kind": kind, "hop": self.upstream_names[hop], "address": hop, "flows": flows}
        return {"kind": kind, "hop": hop, "flows": flows}


def display_name(names: Mapping[str, str], hop: str) -> str:
    """``core`` for ``127.0.0.1:20086`` when that upstream said it is core; else ``hop``."""
    return names.get(hop, hop)


def parse_lines(lines: Iterable[str]) -> Iterator[dict[str, Any] | None]:
    """Each non-blank line as a record, or None when it is not a JSON object."""
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        yield record if isinstance(record, dict) else None


def summarize_records(records: Iterable[dict[str, Any] | None]) -> HopSummary:
    """Summarize records (None: an unreadable line, counted)."""
    summary = HopSummary()
    for record in records:
        if record is None:
            summary.bad_lines += 1
        else:
            summary.add(record)
    return summary


def sections(data: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, int]]]]:
    answered = [(_answered_label(row), row["flows"]) for row in data["answered_by"]]
    return [
        ("answered by", answered),
        ("status", list(data["status"].items())),
        ("auth result", list(data["auth"].items())),
        ("errors", list(data["errors"].items())),
        ("findings", list(data["findings"].items())),
    ]


def _answered_label(row: Mapping[str, Any]) -> str:
    address = f" ({row['address']})" if row.get("address") and row["address"] != row["hop"] else ""
    return f"{row['kind']} {row['hop']}{address}".rstrip()


def _headline(data: Mapping[str, Any]) -> str:
    bad = f", {data['bad_lines']} unreadable lines" if data["bad_lines"] else ""
    return f"{data['flows']} flows{bad}"


def format_text(data: Mapping[str, Any]) -> str:
    lines = [f"hop log: {_headline(data)}"]
    for title, rows in sections(data):
        if rows:
            lines.append(f"  {title}:")
            # labels are network text (Via names, paths in errors): escaped for the terminal
            lines += [f"    {escape_controls(label):<40} {count:>6}" for label, count in rows]
    if not data["findings"]:
        lines.append("  findings: none")
    return "\n".join(lines) + "\n"


def format_markdown(data: Mapping[str, Any]) -> str:
    lines = [f"**hop log: {_headline(data)}**"]
    for title, rows in sections(data):
        lines += ["", f"| {title} | flows |", "|---|---:|"]
        lines += [f"| {escape_controls(label).replace('|', '/')} | {count} |" for label, count in rows] or [
            "| (none) | 0 |"
        ]
    return "\n".join(lines) + "\n"


def format_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


FORMATTERS = {"text": format_text, "json": format_json, "markdown": format_markdown}
