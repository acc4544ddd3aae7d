"""``mitm407 report FILE``: summarize a hop log (flows per hop, status, auth result, findings)."""

from __future__ import annotations

import argparse
import sys

from .hopsummary import FORMATTERS, summarize_lines


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="summarize a hop log (JSON lines) per hop, status, auth result, finding")
    p.add_argument("file", metavar="FILE", help="hop log written with --set hoplog=FILE; '-' reads stdin")
    p.add_argument("--format", choices=sorted(FORMATTERS), default="text", help="output format (default text)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            summary = summarize_lines(sys.stdin)
        else:
            with open(args.file, encoding="utf-8", errors="replace") as f:
                summary = summarize_lines(f)
    except OSError as e:
        print(f"mitm407 report: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2
    sys.stdout.write(FORMATTERS[args.format](summary.as_dict()))
    return 0
