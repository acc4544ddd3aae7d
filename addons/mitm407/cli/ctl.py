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
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

from mitm407.core.clock import parse_advance_text

# action -> (HTTP method, path, query parameters it takes)
ACTIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "status": ("GET", "/status", ()),
    "scenario": ("PUT", "/scenario", ()),
    "expire": ("POST", "/expire", ()),
    "rotate": ("POST", "/rotate", ()),
    "lock": ("POST", "/lock", ("user",)),
    "unlock": ("POST", "/unlock", ("user",)),
    "reset": ("POST", "/reset", ()),
    "advance": ("POST", "/clock", ()),
    "hops": ("GET", "/hops", ("since",)),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ctl", help="drive a running proxy's control API (status, expire, rotate, lock, ...)")
    p.add_argument("action", choices=sorted(ACTIONS), help="what to do")
    p.add_argument("target", nargs="?", help="scenario: a shipped name or a YAML file; advance: SECONDS")
    p.add_argument("--port", type=int, required=True, help="the proxy's control_port")
    p.add_argument("--host", default="127.0.0.1", help="where the control API listens (default 127.0.0.1)")
    p.add_argument("--token", default=os.environ.get("MITM407_CONTROL_TOKEN", ""), help="bearer token, if set")
    p.add_argument("--user", help="lock/unlock: the user name")
    p.add_argument("--since", type=int, default=0, help="hops: records after this sequence number")
    p.set_defaults(func=run)


def scenario_body(target: str | None) -> tuple[bytes, str]:
    """PUT /scenario's body: a YAML file's text, or ``{"name": ...}`` for a shipped scenario."""
    if not target:
        raise SystemExit("mitm407 ctl scenario: name a shipped scenario or a YAML file")
    path = Path(target)
    if path.is_file():
        return path.read_bytes(), "application/yaml"
    return json.dumps({"name": target}).encode(), "application/json"


def advance_body(target: str | None) -> tuple[bytes, str]:
    """POST /clock's body, ``{"advance": SECONDS}``: checked here too, for a one-line error before any request."""
    try:
        seconds = parse_advance_text(target or "")
    except ValueError as e:
        raise SystemExit(f"mitm407 ctl advance SECONDS: {e}") from None
    return json.dumps({"advance": seconds}).encode(), "application/json"


BODIES = {"scenario": scenario_body, "advance": advance_body}  # actions that send a body, from ``target``


def build_request(args: argparse.Namespace) -> urllib.request.Request:
    method, path, params = ACTIONS[args.action]
    query = {}
    if "user" in params:
        if not args.user:
            raise SystemExit(f"mitm407 ctl {args.action}: --user NAME is required")
        query["user"] = args.user
    if "since" in params:
        query["since"] = str(args.since)
    url = f"http://{args.host}:{args.port}{path}" + (f"?{urlencode(query)}" if query else "")
    make_body = BODIES.get(args.action)
    body, content_type = make_body(args.target) if make_body is not None else (None, "")
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    return request


def run(args: argparse.Namespace) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through HTTP_PROXY
    try:
        with opener.open(build_request(args), timeout=30) as response:
            print(response.read().decode("utf-8", "replace"), end="")
            return 0
    except urllib.error.HTTPError as e:
        print(e.read().decode("utf-8", "replace"), end="")
        return 1
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        print(f"mitm407 ctl: cannot reach the control API at {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
