"""``mitm407 capture``: record a real proxy's authentication behaviour as a replay scenario.

    mitm407 capture --upstream http://PROXY:PORT -o corp.yaml [--duration S] [--requests N]
    mitm407 capture --from flows.mitm -o corp.yaml      (or traffic.har)

Live capture runs mitmdump in upstream mode in front of the proxy with the
packaged capture script; point real clients at it and stop with Ctrl-C, or
after ``--duration`` seconds or ``--requests`` answers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import subprocess
import sys
from pathlib import Path

from mitm407.capture.files import CaptureFileError, observations_from_file
from mitm407.capture.infer import CaptureError, infer_scenario
from mitm407.teach.lab import mitmdump_command, packaged_script


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("capture", help="record a real proxy's 407 behaviour as a replay scenario")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--upstream", metavar="URL", help="the real proxy, e.g. http://proxy.corp:3128")
    source.add_argument("--from", dest="from_file", metavar="FILE", help="saved traffic: a mitmproxy flow file or .har")
    p.add_argument("-o", "--output", default="captured.yaml", metavar="FILE", help="scenario to write")
    p.add_argument("--listen-host", default="127.0.0.1", help="where clients connect (default 127.0.0.1)")
    p.add_argument("-p", "--listen-port", type=int, default=8080, help="default 8080")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--requests", type=int, default=0, metavar="N", help="stop after N answers")
    p.add_argument("--keep-usernames", action="store_true", help="keep user names (passwords are never kept)")
    p.add_argument("mitmdump_args", nargs="*", metavar="-- MITMDUMP-ARG", help="more mitmdump arguments after --")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.from_file:
        return from_file(args)
    command = mitmdump_command(
        packaged_script("capture_script.py"),
        [
            "--mode", f"upstream:{args.upstream}",
            "--listen-host", args.listen_host,
            "-p", str(args.listen_port),
            "--set", f"capture_output={args.output}",
            "--set", f"capture_requests={args.requests}",
            "--set", f"capture_keep_usernames={str(args.keep_usernames).lower()}",
            *args.mitmdump_args,
        ],
    )  # fmt: skip
    where = f"http://{args.listen_host}:{args.listen_port}"
    print(f"mitm407 capture: point clients at {where}; Ctrl-C stops", file=sys.stderr)
    proc = subprocess.Popen(command)
    try:
        proc.wait(timeout=args.duration)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # mitmdump writes the scenario in its ``done`` hook
    except KeyboardInterrupt:
        pass  # the terminal sent SIGINT to mitmdump too
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    if not Path(args.output).exists():
        print(f"mitm407 capture: no scenario written (no refusal captured); mitmdump exit {code}", file=sys.stderr)
        return 1
    print(f"mitm407 capture: wrote {args.output}", file=sys.stderr)
    return 0


def from_file(args: argparse.Namespace) -> int:
    path = Path(args.from_file)
    try:
        observations = observations_from_file(path, args.keep_usernames)
        stamp = datetime.datetime.fromtimestamp(os.stat(path).st_mtime, datetime.UTC)
        source = f"saved traffic {path.name}"
        text = infer_scenario(observations, source=source, captured_at=f"{stamp:%Y-%m-%d %H:%M UTC}")
    except (CaptureFileError, CaptureError, OSError) as e:
        print(f"mitm407 capture: {e}", file=sys.stderr)
        return 1
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"mitm407 capture: wrote {args.output} from {len(observations)} answers in {path}", file=sys.stderr)
    return 0
