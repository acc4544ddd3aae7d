"""``mitm407 demo NAME``: teaching walk-throughs that start their own processes.

Colour only when stdout is a terminal and NO_COLOR is unset; pausing between
steps (``--step``) by default only when both stdin and stdout are terminals,
so a piped run is a plain, complete transcript.
"""

from __future__ import annotations

import argparse
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from mitm407.teach.demos import DEMOS

    p = sub.add_parser("demo", help="teaching demos (401-vs-407: proxy vs server authentication, step by step)")
    p.add_argument("name", choices=sorted(DEMOS), help="which demo")
    p.add_argument("--step", action=argparse.BooleanOptionalAction, default=None,
                   help="wait for Enter between steps (default: only when run in a terminal)")
    p.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                   help="ANSI colours (default: when stdout is a terminal and NO_COLOR is unset)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mitm407.teach.demos import DEMOS

    colour = args.color if args.color is not None else sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    step = args.step if args.step is not None else sys.stdin.isatty() and sys.stdout.isatty()
    try:
        return DEMOS[args.name](sys.stdout, colour=colour, step=step)
    except RuntimeError as e:
        print(f"mitm407 demo: could not start: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `demo ... | head`: the reader left; exit quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("\nmitm407 demo: interrupted; every process was stopped", file=sys.stderr)
        return 130
