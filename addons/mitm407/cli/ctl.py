"""``mitm407 ctl ACTION --port N``: drive a running proxy's control API from a shell or another language's CI.

    mitm407 ctl status --port 8081
    mitm407 ctl expire --port 8081          # every credential accepted so far is challenged again
    mitm407 ctl lock --user alice --port 8081
    mitm407 ctl scenario digest --port 8081 # a shipped name or a YAML file
    mitm407 ctl advance 90 --port 8081      # the proxy's clock jumps 90 s: nonces go stale, windows end

Prints the JSON answer; exits 0 on a 2xx answer, 1 otherwise (the answer says why).
The proxy must run with ``--set control_port=N``; ``MITM407_CONTROL_TOKEN`` or
``--token`` gives the bearer token when one is set.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request
from pathlib import Path

from mitm407.core.clock import parse_advance_text
from mitm407.proxy import controlclient
from mitm407.proxy.controlclient import ACTIONS, TOKEN_ENV, ControlAPIError, ControlEndpoint, is_loopback, json_body


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ctl", help="drive a running proxy's control API (status, expire, rotate, lock, ...)")
    p.add_argument("action", choices=sorted(ACTIONS), help="what to do")
    p.add_argument("target", nargs="?", help="scenario: a shipped name or a YAML file; advance: SECONDS")
    p.add_argument("--port", type=int, required=True, help="the proxy's control_port")
    p.add_argument("--host", default="127.0.0.1", help="where the control API listens (default 127.0.0.1)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV, ""), help="bearer token, if set")
    p.add_argument("--user", help="lock/unlock: the user name")
    p.add_argument("--since", type=int, default=0, help="hops: records after this sequence number")
    p.set_defaults(func=run)


def scenario_body(target: str | None, host: str = "127.0.0.1") -> tuple[bytes, str]:
    """PUT /scenario's body: ``{"name": ...}`` for a shipped scenario or a file the proxy can read, else the YAML text.

    A proxy on this machine (a loopback control address) is given the file's absolute path: it then
    resolves files the scenario names (htpasswd, ``file:`` secrets) beside it, as at start-up, and
    reloads it on edits. A remote proxy cannot read our files: it gets the text.
    """
    if not target:
        raise SystemExit("mitm407 ctl scenario: name a shipped scenario or a YAML file")
    path = Path(target)
    if path.is_file():
        if is_loopback(host):
            return json_body({"name": str(path.resolve())})
        return path.read_bytes(), "application/yaml"
    return json_body({"name": target})


def advance_body(target: str | None, host: str = "") -> tuple[bytes, str]:
    """POST /clock's body, ``{"advance": SECONDS}``: checked here too, for a one-line error before any request."""
    try:
        seconds = parse_advance_text(target or "")
    except ValueError as e:
        raise SystemExit(f"mitm407 ctl advance SECONDS: {e}") from None
    return json_body({"advance": seconds})


BODIES = {"scenario": scenario_body, "advance": advance_body}  # actions that send a body, from ``target``


def build_request(args: argparse.Namespace) -> urllib.request.Request:
    params = ACTIONS[args.action][2]
    query = {}
    if "user" in params:
        if not args.user:
            raise SystemExit(f"mitm407 ctl {args.action}: --user NAME is required")
        query["user"] = args.user
    if "since" in params:
        query["since"] = str(args.since)
    make_body = BODIES.get(args.action)
    body = make_body(args.target, args.host) if make_body is not None else None
    return controlclient.build_request(ControlEndpoint(args.port, args.host, args.token), args.action, query, body)


def run(args: argparse.Namespace) -> int:
    try:
        status, body = controlclient.send(build_request(args))
    except ControlAPIError as e:
        print(f"mitm407 ctl: {e}", file=sys.stderr)
        return 1
    print(body.decode("utf-8", "replace"), end="")
    return 0 if 200 <= status < 300 else 1
