"""``mitm407 run|web [SCENARIO] [MITMPROXY-ARGS...]``: mitmdump (or mitmweb) with the mitm407 addon, no script path.

    mitm407 run corp.yaml -p 3128  =  mitmdump -s .../mitm407/proxyauth_script.py --set scenario=corp.yaml
                                               --listen-host 127.0.0.1 -p 3128
    mitm407 web corp.yaml          =  the same with mitmweb (flows in the browser, our marks and comments)

The first argument is the scenario (a file or a shipped name) unless it starts
with ``-``; everything else goes to mitmproxy unchanged. The proxy listens on
127.0.0.1 unless the arguments say ``--listen-host``: the default scenario's
password is public, so it must not be an open door on the network by default.
The process becomes mitmproxy (``exec``), so signals and the exit status are its own.
"""

from __future__ import annotations

import argparse
import os
import sys

from mitm407.core.problems import ScenarioError
from mitm407.scenario.load import load_scenario, resolve_scenario_path
from mitm407.teach.lab import mitmdump_command, packaged_script

TOOLS = {
    "run": ("mitmdump", "start mitmdump with the mitm407 addon: run [SCENARIO] [mitmdump args]"),
    "web": ("mitmweb", "start mitmweb (browser UI) with the mitm407 addon: web [SCENARIO] [mitmweb args]"),
}


def register(sub: argparse._SubParsersAction) -> None:
    for name, (tool, summary) in TOOLS.items():
        p = sub.add_parser(
            name,
            help=summary,
            description=f"Start {tool} with the mitm407 addon, listening on 127.0.0.1 unless --listen-host is "
            "given. SCENARIO: a file or a shipped name (default: default).",
        )
        p.add_argument("args", nargs=argparse.REMAINDER, metavar=f"[SCENARIO] [{tool.upper()}-ARG...]")
        p.set_defaults(func=run, tool=tool)


def sets_listen_host(args: list[str]) -> bool:
    return any(a == "--listen-host" or a.startswith("--listen-host=") for a in args)


def build_command(args: list[str], tool: str = "mitmdump") -> tuple[list[str], str]:
    """(mitmproxy command line, scenario path) for ``run``'s (or ``web``'s) arguments."""
    rest = list(args)
    if rest and rest[0] == "--":
        rest.pop(0)
    scenario = rest.pop(0) if rest and not rest[0].startswith("-") else ""
    path = str(resolve_scenario_path(scenario))
    listen = [] if sets_listen_host(rest) else ["--listen-host", "127.0.0.1"]
    command = mitmdump_command(
        packaged_script("proxyauth_script.py"), ["--set", f"scenario={path}", *listen, *rest], tool
    )
    return command, path


def run(args: argparse.Namespace) -> int:
    return check_then_exec(*build_command(args.args, args.tool))


def check_then_exec(command: list[str], scenario_path: str) -> int:
    """Fail here with ``file:line:col`` if the scenario is broken; else become mitmproxy (``exec``)."""
    try:
        load_scenario(scenario_path)
    except ScenarioError as e:
        print(e, file=sys.stderr)
        return 1
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # not reached
