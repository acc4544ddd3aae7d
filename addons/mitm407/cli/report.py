"""``mitm407 report FILE``: summarize a hop log (flows per hop, status, auth result, findings).

``--html`` draws every flow as a sequence diagram instead (``htmlreport.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TextIO

from mitm407.hoplog.html import DEFAULT_MAX_FLOWS, render_report
from mitm407.hoplog.summary import FORMATTERS, HopSummary, parse_lines, summarize_records


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="summarize a hop log (JSON lines) per hop, status, auth result, finding")
    p.add_argument("file", metavar="FILE", help="hop log written with --set hoplog=FILE; '-' reads stdin")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--format", choices=sorted(FORMATTERS), default="text", help="output format (default text)")
    kind.add_argument("--html", action="store_true",
                      help="a self-contained HTML page: a summary, then each flow as a sequence diagram")
    p.add_argument("-o", "--output", metavar="OUT", help="write to this file (default: stdout)")
    p.add_argument("--max-flows", type=positive, default=DEFAULT_MAX_FLOWS, metavar="N",
                   help=f"--html: draw at most the first N flows; the summary counts all (default {DEFAULT_MAX_FLOWS})")
    p.set_defaults(func=run)


def render(args: argparse.Namespace, lines: TextIO) -> tuple[str, HopSummary]:
    """The report, and the summary that counted its records (read once: stdin cannot rewind)."""
    records = parse_lines(lines)
    if args.html:
        summary = HopSummary()
        title = f"mitm407 hop log: {os.path.basename(args.file)}"
        return render_report(records, args.max_flows, title=title, summary=summary), summary
    summary = summarize_records(records)
    return FORMATTERS[args.format](summary.as_dict()), summary


def run(args: argparse.Namespace) -> int:
    try:
        with contextlib.ExitStack() as stack:
            lines = sys.stdin if args.file == "-" else stack.enter_context(
                open(args.file, encoding="utf-8", errors="replace"))
            text, summary = render(args, lines)
    except OSError as e:
        print(f"mitm407 report: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2
    if not summary.flows:  # a wrong file (or an empty log): say so rather than report "0 flows" and succeed
        bad = summary.bad_lines
        what = f"{bad} lines, none a hop-log record (a JSON object)" if bad else "it is empty"
        print(f"mitm407 report: no readable hop-log line in {args.file}: {what}", file=sys.stderr)
        return 1
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as e:
        print(f"mitm407 report: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        return 2
    print(f"mitm407 report: wrote {args.output}", file=sys.stderr)
    return 0
