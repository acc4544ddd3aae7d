"""``mitm407 demo NAME``: teaching walk-throughs that start their own processes.

Colour only when stdout is a terminal and NO_COLOR is unset; pausing between
steps (``--step``) by default only when both stdin and stdout are terminals,
so a piped run is a plain, complete transcript.

Classroom mode: ``--keep`` leaves the proxy and the web server running after
the walk-through, on ports the teacher can announce in advance
(``--proxy-port``, ``--origin-port``); Ctrl-C stops them. ``--handout DIR``
chooses where the hop log, its HTML report and the transcript go.
"""

from __future__ import annotations

import argparse
import os
import sys

from mitm407.cli.ports import port_number, port_problem


def register(sub: argparse._SubParsersAction) -> None:
    from mitm407.teach.demos import DEMOS

    p = sub.add_parser("demo", help="teaching demos (401-vs-407: proxy vs server authentication, step by step)")
    p.add_argument("name", choices=sorted(DEMOS), help="which demo")
    p.add_argument("--step", action=argparse.BooleanOptionalAction, default=None,
                   help="wait for Enter between steps (default: only when run in a terminal)")
    p.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                   help="ANSI colours (default: when stdout is a terminal and NO_COLOR is unset)")
    p.add_argument("--keep", action="store_true",
                   help="classroom mode: after the walk-through keep the proxy and web server running "
                        "(prints what to try; Ctrl-C stops them)")
    p.add_argument("--proxy-port", type=port_number, metavar="PORT",
                   help="the proxy's port on 127.0.0.1 (default: a free one)")
    p.add_argument("--origin-port", type=port_number, metavar="PORT",
                   help="the web server's port on 127.0.0.1 (default: a free one)")
    p.add_argument("--handout", metavar="DIR",
                   help="write the hop log, its HTML report and the transcript here (default: a new temp folder)")
    p.set_defaults(func=run)


def check_ports(args: argparse.Namespace) -> str | None:
    if args.proxy_port is not None and args.proxy_port == args.origin_port:
        return f"--proxy-port and --origin-port are both {args.proxy_port}; they need two ports"
    for flag, port in (("--proxy-port", args.proxy_port), ("--origin-port", args.origin_port)):
        problem = port_problem(port)
        if problem:
            return f"{flag}: {problem}"
    return None


def run(args: argparse.Namespace) -> int:
    from mitm407.teach.demos import DEMOS

    colour = args.color if args.color is not None else sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    step = args.step if args.step is not None else sys.stdin.isatty() and sys.stdout.isatty()
    problem = check_ports(args)
    if problem:
        print(f"mitm407 demo: {problem}", file=sys.stderr)
        return 2
    try:
        return DEMOS[args.name](sys.stdout, colour=colour, step=step, keep=args.keep, proxy_port=args.proxy_port,
                                origin_port=args.origin_port, handout_dir=args.handout)
    except RuntimeError as e:
        print(f"mitm407 demo: could not start: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `demo ... | head`: the reader left; exit quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("\nmitm407 demo: interrupted; every process was stopped", file=sys.stderr)
        return 130
