"""The ``mitm407`` command line: one subcommand per module, registered here.

Each command module exposes ``register(subparsers)``, which adds its parser
and sets ``func``; a new command is one module plus one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from mitm407 import __version__

COMMANDS = (
    "check",
    "options",
    "scenarios",
    "matrix",
    "demo",
    "report",
    "chain",
    "run",  # also registers `web` (the same with mitmweb)
    "capture",
    "kdc",
    "ctl",
    "container",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mitm407", description="Scriptable authenticating forward proxy on mitmproxy."
    )
    parser.add_argument("--version", action="version", version=f"mitm407 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


# Commands whose arguments go on to another program: argparse would take their
# leading options (``run -p 3128``) for its own, so a ``--`` is put in front.
PASSTHROUGH = ("run", "web")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 and argv[0] in PASSTHROUGH and argv[1].startswith("-") and argv[1] not in ("-h", "--help", "--"):
        argv.insert(1, "--")
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return quiet_broken_pipe()


def quiet_broken_pipe() -> int:
    """The reader went away (``mitm407 scenarios | head -3``): exit quietly, as ``cat`` does.

    Python would print a BrokenPipeError traceback when it flushes stdout at
    exit; pointing stdout at /dev/null first leaves nothing to flush.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe
