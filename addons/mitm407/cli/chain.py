"""``mitm407 chain --hop NAME:SCENARIO ...``: a chain of proxies on one machine.

Starts one ``mitmdump`` per hop, the last first, each hop in
``--mode upstream:`` pointing at the next, each with its own scenario,
``hop_name`` and hop log, so "who sent this 407?" can be tried on a laptop.
Output is prefixed with the hop's name; Ctrl-C (or SIGTERM) stops every hop:
SIGINT to its process group, SIGKILL after a grace period.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mitm407.cli.ports import port_number, port_problem
from mitm407.teach.lab import entry_script, find_mitmdump, free_port

GRACE_SECONDS = 8.0
START_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class HopSpec:
    name: str
    scenario: str | None  # None: hop log only, no authentication


@dataclass
class Hop:
    spec: HopSpec
    port: int
    proc: subprocess.Popen[bytes]
    # set when mitmdump says "proxy listening at": a port that merely accepts
    # connections could belong to another process that won a race for it
    ready: threading.Event = field(default_factory=threading.Event)


def parse_hop(text: str) -> HopSpec:
    """``edge:scenarios/default.yaml`` -> HopSpec("edge", "scenarios/default.yaml"); ``plain`` -> no auth."""
    name, sep, scenario = text.partition(":")
    if not name or any(ch.isspace() for ch in name):
        raise argparse.ArgumentTypeError(f"bad hop {text!r}: expected NAME:SCENARIO or NAME")
    return HopSpec(name, scenario if sep and scenario else None)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chain",
        help="run a chain of mitmdump proxies (--mode upstream:), each with its own scenario and hop_name",
        description="Start hops in order client -> first --hop -> ... -> last --hop -> origin. Ctrl-C stops all.",
    )
    p.add_argument(
        "--hop", dest="hops", action="append", type=parse_hop, required=True, metavar="NAME[:SCENARIO]",
        help="a hop, nearest the client first; without SCENARIO the hop only logs (no authentication)",
    )
    p.add_argument("--port", type=int, default=8080, help="the first hop's port (default 8080); 0 picks a free one")
    p.add_argument(
        "--hop-port", dest="hop_ports", action="append", default=[], metavar="NAME=PORT",
        help="a fixed 127.0.0.1 port for hop NAME (default: a free one; for the first hop it replaces --port)",
    )
    p.add_argument("--listen-host", default="127.0.0.1", help="address the first hop listens on (default 127.0.0.1)")
    p.add_argument("--upstream", metavar="URL", help="a proxy after the last hop (e.g. a real corporate proxy)")
    p.add_argument(
        "--upstream-auth", action="append", default=[], metavar="NAME=USER:PASSWORD",
        help="mitmproxy's upstream_auth for hop NAME (credentials it sends to the next hop)",
    )
    p.add_argument("--hoplog-dir", metavar="DIR", help="write DIR/NAME.jsonl per hop (default: a new temp folder)")
    p.add_argument("--mitmdump", help="mitmdump executable (default: next to this Python, else on PATH)")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more mitmdump arguments for every hop")
    p.set_defaults(func=run)


def find_mitmdump_or_exit(explicit: str | None) -> str:
    found = explicit or find_mitmdump()
    if not found:
        raise SystemExit("mitm407 chain: mitmdump not found; pass --mitmdump PATH")
    return found


def parse_hop_ports(values: list[str], specs: list[HopSpec], first_port: int) -> dict[str, int]:
    """``--hop-port NAME=PORT`` for every hop that has one; the first hop gets ``--port`` unless named.

    Checked before any hop starts: known hop names, valid and distinct ports, none in use.
    """
    names = [spec.name for spec in specs]
    ports: dict[str, int] = {}
    for value in values:
        name, sep, text = value.partition("=")
        try:
            port = port_number(text) if sep else 0
        except argparse.ArgumentTypeError as e:
            raise SystemExit(f"mitm407 chain: bad --hop-port {value!r}: {e}") from None
        if not port:
            raise SystemExit(f"mitm407 chain: bad --hop-port {value!r}: expected NAME=PORT")
        if name not in names:
            raise SystemExit(f"mitm407 chain: --hop-port for unknown hop {name!r} (hops: {', '.join(names)})")
        if name in ports:
            raise SystemExit(f"mitm407 chain: two --hop-port for hop {name!r}")
        ports[name] = port
    if first_port and names[0] not in ports:
        ports[names[0]] = first_port
    taken: dict[int, str] = {}
    for name in (n for n in names if n in ports):  # in chain order: the error names the nearer hop first
        port = ports[name]
        if port in taken:
            raise SystemExit(f"mitm407 chain: hops {taken[port]!r} and {name!r} both want port {port}")
        taken[port] = name
        problem = port_problem(port)
        if problem:
            raise SystemExit(f"mitm407 chain: hop {name!r}: {problem}")
    return ports


def parse_upstream_auth(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, credentials = value.partition("=")
        if not sep or ":" not in credentials:
            raise SystemExit(f"mitm407 chain: bad --upstream-auth {value!r}: expected NAME=USER:PASSWORD")
        out[name] = credentials
    return out


def hop_command(
    mitmdump: str, spec: HopSpec, host: str, port: int, upstream: str | None, hoplog: Path,
    upstream_auth: str | None, extra: list[str], chain_end: bool = False,
) -> list[str]:
    script = entry_script("proxyauth" if spec.scenario else "hoplog")
    args = [mitmdump, "--listen-host", host, "-p", str(port), "-s", script, "--set", f"hop_name={spec.name}"]
    args += ["--set", f"hoplog={hoplog}"]
    if spec.scenario:
        args += ["--set", f"scenario={spec.scenario}"]
    if upstream:
        args += ["--mode", f"upstream:{upstream}"]
    if upstream and not chain_end and not any(a.startswith("ssl_insecure") for a in extra):
        # (mitmproxy 12 refuses the same --set twice)
        # the next hop is a mitm407 that signs with its own CA: trust it, as the client trusts ours
        args += ["--set", "ssl_insecure=true"]
    if upstream_auth:
        args += ["--set", f"upstream_auth={upstream_auth}"]
    return args + extra


def _pump(hop: Hop) -> None:
    """Copy a hop's output to ours, each line prefixed with the hop's name."""
    listening = f":{hop.port}"
    for raw in iter(hop.proc.stdout.readline, b""):  # type: ignore[union-attr]
        line = raw.decode("utf-8", "replace")
        if "listening at" in line and listening in line:
            hop.ready.set()
        sys.stdout.write(f"[{hop.spec.name}] {line}")
        sys.stdout.flush()


def _wait_listening(hop: Hop, stop: threading.Event) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and not stop.is_set():
        if hop.proc.poll() is not None:
            raise RuntimeError(f"hop {hop.spec.name} exited with status {hop.proc.returncode}")
        if hop.ready.wait(0.05):
            return
    if stop.is_set():
        raise KeyboardInterrupt
    raise RuntimeError(f"hop {hop.spec.name} is not listening on port {hop.port} after {START_TIMEOUT:.0f}s")


def stop_hops(hops: list[Hop]) -> None:
    """SIGINT every hop's process group, then SIGKILL whatever is left after the grace period."""
    for hop in hops:
        if hop.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(hop.proc.pid, signal.SIGINT)
    deadline = time.monotonic() + GRACE_SECONDS
    for hop in hops:
        try:
            hop.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(hop.proc.pid, signal.SIGKILL)
            hop.proc.wait(timeout=5)


def run(args: argparse.Namespace) -> int:
    mitmdump = find_mitmdump_or_exit(args.mitmdump)
    auth = parse_upstream_auth(args.upstream_auth)
    unknown = sorted(set(auth) - {spec.name for spec in args.hops})
    if unknown:
        raise SystemExit(f"mitm407 chain: --upstream-auth for unknown hop {unknown[0]!r}")
    fixed_ports = parse_hop_ports(args.hop_ports, args.hops, args.port)
    extra = [a for a in args.extra if a != "--"]
    workdir = Path(tempfile.mkdtemp(prefix="mitm407-chain-"))
    logdir = Path(args.hoplog_dir) if args.hoplog_dir else workdir
    logdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, kill; also when started with SIGINT ignored
        signal.signal(signum, lambda *_: stop.set())
    hops: list[Hop] = []
    upstream = args.upstream
    status = 0
    try:
        for index in range(len(args.hops) - 1, -1, -1):  # the last hop first: the others point at it
            if stop.is_set():
                raise KeyboardInterrupt
            spec = args.hops[index]
            first = index == 0
            port = fixed_ports.get(spec.name) or free_port()
            host = args.listen_host if first else "127.0.0.1"
            command = hop_command(
                mitmdump, spec, host, port, upstream, logdir / f"{spec.name}.jsonl", auth.get(spec.name),
                extra, chain_end=index == len(args.hops) - 1,
            )
            proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            hop = Hop(spec, port, proc)
            hops.append(hop)
            threading.Thread(target=_pump, args=(hop,), daemon=True).start()
            _wait_listening(hop, stop)
            upstream = f"http://127.0.0.1:{port}"
        path = " -> ".join(f"{h.spec.name} ({h.port})" for h in reversed(hops))
        print(f"mitm407 chain ready: client -> {path} -> {args.upstream or 'origin'}", flush=True)
        print(f"mitm407 chain: first hop http://{args.listen_host}:{hops[-1].port}, hop logs in {logdir}", flush=True)
        while not stop.is_set():
            dead = [h for h in hops if h.proc.poll() is not None]
            if dead:
                print(f"mitm407 chain: hop {dead[0].spec.name} exited; stopping the chain", file=sys.stderr)
                status = 1
                break
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    except RuntimeError as e:
        print(f"mitm407 chain: {e}", file=sys.stderr)
        status = 1
    finally:
        stop_hops(hops)
    print("mitm407 chain stopped", flush=True)
    return status
