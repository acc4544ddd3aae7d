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


class HopSummary:
    """Running counters over hop-log records."""

    def __init__(self) -> None:
        self.flows = 0
        self.bad_lines = 0
        self.answered_by: Counter[tuple[str, str]] = Counter()
        self.status: Counter[str] = Counter()
        self.auth: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.findings: Counter[str] = Counter()

    def add(self, record: Mapping[str, Any]) -> None:
        self.flows += 1
        answered = record.get("answered_by")
        answered = answered if isinstance(answered, Mapping) else {}  # a hand-edited log: counted, not fatal
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
            "answered_by": [
                {"kind": kind, "hop": hop, "flows": n} for (kind, hop), n in sorted(self.answered_by.items())
            ],
            "status": dict(sorted(self.status.items())),
            "auth": dict(sorted(self.auth.items())),
            "errors": dict(sorted(self.errors.items())),
            "findings": dict(sorted(self.findings.items())),
        }


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


def summarize_lines(lines: Iterable[str]) -> HopSummary:
    """Summarize JSON lines; lines that are not a JSON object are counted, not fatal."""
    return summarize_records(parse_lines(lines))


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
    answered = [(f"{row['kind']} {row['hop']}".rstrip(), row["flows"]) for row in data["answered_by"]]
    return [
        ("answered by", answered),
        ("status", list(data["status"].items())),
        ("auth result", list(data["auth"].items())),
        ("errors", list(data["errors"].items())),
        ("findings", list(data["findings"].items())),
    ]


def _headline(data: Mapping[str, Any]) -> str:
    bad = f", {data['bad_lines']} unreadable lines" if data["bad_lines"] else ""
    return f"{data['flows']} flows{bad}"


def format_text(data: Mapping[str, Any]) -> str:
    lines = [f"hop log: {_headline(data)}"]
    for title, rows in sections(data):
        if rows:
            lines.append(f"  {title}:")
            lines += [f"    {label:<40} {count:>6}" for label, count in rows]
    if not data["findings"]:
        lines.append("  findings: none")
    return "\n".join(lines) + "\n"


def format_markdown(data: Mapping[str, Any]) -> str:
    lines = [f"**hop log: {_headline(data)}**"]
    for title, rows in sections(data):
        lines += ["", f"| {title} | flows |", "|---|---:|"]
        lines += [f"| {label.replace('|', '/')} | {count} |" for label, count in rows] or ["| (none) | 0 |"]
    return "\n".join(lines) + "\n"


def format_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


FORMATTERS = {"text": format_text, "json": format_json, "markdown": format_markdown}
