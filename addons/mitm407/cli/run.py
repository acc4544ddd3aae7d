"""``mitm407 run [SCENARIO] [MITMDUMP-ARGS...]``: mitmdump with the mitm407 addon, no script path needed.

    mitm407 run corp.yaml -p 3128        =  mitmdump -s .../mitm407/proxyauth_script.py --set scenario=corp.yaml -p 3128

The first argument is the scenario (a file or a shipped name) unless it starts
with ``-``; everything else goes to mitmdump unchanged. The process becomes
mitmdump (``exec``), so signals and the exit status are mitmdump's.
"""

from __future__ import annotations

import argparse
import os
import sys

from mitm407.core.problems import ScenarioError
from mitm407.scenario.load import load_scenario, resolve_scenario_path
from mitm407.teach.lab import mitmdump_command, packaged_script


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="start mitmdump with the mitm407 addon: run [SCENARIO] [mitmdump args]",
        description="Start mitmdump with the mitm407 addon. SCENARIO: a file or a shipped name (default: default).",
    )
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="[SCENARIO] [MITMDUMP-ARG...]")
    p.set_defaults(func=run)


def build_command(args: list[str]) -> tuple[list[str], str]:
    """(mitmdump command line, scenario path) for ``run``'s arguments."""
    rest = list(args)
    if rest and rest[0] == "--":
        rest.pop(0)
    scenario = rest.pop(0) if rest and not rest[0].startswith("-") else ""
    path = str(resolve_scenario_path(scenario))
    return mitmdump_command(packaged_script("proxyauth_script.py"), ["--set", f"scenario={path}", *rest]), path


def run(args: argparse.Namespace) -> int:
    command, path = build_command(args.args)
    try:
        load_scenario(path)  # fail here with file:line:col, before mitmdump starts
    except ScenarioError as e:
        print(e, file=sys.stderr)
        return 1
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # not reached
