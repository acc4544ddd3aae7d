"""``mitm407 container``: the container image's entrypoint, configured by environment variables.

CI services (GitHub Actions ``services:``, testcontainers) pass settings as
environment variables and read logs from stdout, so:

    MITM407_SCENARIO       shipped name or a mounted file     (default: default)
    MITM407_PORT           proxy port inside the container    (default: 8080)
    MITM407_LISTEN_HOST    address to bind                    (default: 0.0.0.0: the container's network)
    MITM407_CONTROL_PORT   control API port, off when empty   (default: off)
    MITM407_CONTROL_TOKEN  bearer token for the control API   (default: none)
    MITM407_CA_DIR         mitmproxy confdir; the CA is DIR/mitmproxy-ca-cert.pem (default: /ca)
    MITM407_HOPLOG         hop log destination                (default: -, JSON lines on stdout)

The process becomes mitmdump (``exec``): signals and exit status are its own.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from mitm407.cli.run import check_then_exec
from mitm407.scenario.load import resolve_scenario_path
from mitm407.teach.lab import mitmdump_command, packaged_script

DEFAULTS = {
    "MITM407_SCENARIO": "default",
    "MITM407_PORT": "8080",
    "MITM407_LISTEN_HOST": "0.0.0.0",
    "MITM407_CONTROL_PORT": "",
    "MITM407_CONTROL_TOKEN": "",
    "MITM407_CA_DIR": "/ca",
    "MITM407_HOPLOG": "-",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "container",
        help="the container entrypoint: mitmdump configured from MITM407_* environment variables",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run)


def settings(environ: Mapping[str, str]) -> dict[str, str]:
    return {key: environ.get(key, default) or default for key, default in DEFAULTS.items()}


def build_command(environ: Mapping[str, str]) -> tuple[list[str], str]:
    """(mitmdump command line, scenario path) from the environment."""
    s = settings(environ)
    path = str(resolve_scenario_path(s["MITM407_SCENARIO"]))
    args = ["--listen-host", s["MITM407_LISTEN_HOST"], "--listen-port", s["MITM407_PORT"]]
    args += ["--set", f"scenario={path}", "--set", f"confdir={s['MITM407_CA_DIR']}"]
    args += ["--set", f"hoplog={s['MITM407_HOPLOG']}", "--set", "flow_detail=0"]  # stdout: hop-log lines, not dumps
    if s["MITM407_CONTROL_PORT"]:
        args += ["--set", f"control_port={s['MITM407_CONTROL_PORT']}"]
        args += ["--set", f"control_host={s['MITM407_LISTEN_HOST']}"]
    return mitmdump_command(packaged_script("proxyauth_script.py"), args), path


def run(args: argparse.Namespace) -> int:
    return check_then_exec(*build_command(os.environ))
