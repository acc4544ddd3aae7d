"""The ``mitm407`` command line: one subcommand per module, registered here.

Each command module exposes ``register(subparsers)``, which adds its parser
and sets ``func``; a new command is one module plus one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__

COMMANDS = (
    "check",
    "options",
    "scenarios",
    "matrix",
    "demo",
    "report",
    "chain",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mitm407", description="Scriptable authenticating forward proxy on mitmproxy."
    )
    parser.add_argument("--version", action="version", version=f"mitm407 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".cmd_{name}", __package__).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
