"""``mitm407 chain --hop-port NAME=PORT``: fixed ports for every hop (a classroom announces them)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mitm407.cli.chain import HopSpec, parse_hop_ports
from procs import REPO, curl, free_port, mitm407_cli, stop_process

HOPS = [HopSpec("edge", None), HopSpec("core", None), HopSpec("exit", None)]


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def test_named_ports_and_the_first_hop_from_port():
    a, b, c = distinct_free_ports(3)
    assert parse_hop_ports([f"core={b}"], HOPS, a) == {"core": b, "edge": a}
    assert parse_hop_ports([f"edge={c}", f"exit={b}"], HOPS, a) == {"edge": c, "exit": b}  # --hop-port wins
    assert parse_hop_ports([], HOPS, 0) == {}  # --port 0: every hop on a free port


@pytest.mark.parametrize(("values", "message"), [
    (["nope=9"], "--hop-port for unknown hop 'nope' (hops: edge, core, exit)"),
    (["core"], "bad --hop-port 'core': expected NAME=PORT"),
    (["core=http"], "bad --hop-port 'core=http': expected a port number from 1 to 65535"),
    (["core=70000"], "expected a port number from 1 to 65535, got '70000'"),
    (["core=PORT", "core=PORT"], "two --hop-port for hop 'core'"),
    (["core=FIRST"], "hops 'edge' and 'core' both want port"),
])
def test_bad_hop_ports_are_refused_before_anything_starts(values: list[str], message: str):
    first, port = distinct_free_ports(2)
    values = [v.replace("PORT", str(port)).replace("FIRST", str(first)) for v in values]
    with pytest.raises(SystemExit, match=re.escape(message)):
        parse_hop_ports(values, HOPS, first)


@pytest.mark.e2e  # runs the mitm407 command
def test_a_port_in_use_is_named():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"hop 'core': port {port} is in use; choose another one"):
            parse_hop_ports([f"core={port}"], HOPS, 0)
        done = mitm407_cli("chain", "--port", "0", "--hop", "edge", "--hop", "core", "--hop-port", f"core={port}")
    assert done.returncode == 1 and f"hop 'core': port {port} is in use" in done.stderr


@pytest.mark.e2e
def test_chain_listens_on_the_fixed_port_of_every_hop(tmp_path: Path, origin, confdir):
    edge_port, core_port = distinct_free_ports(2)
    out_path = tmp_path / "chain.log"
    args = [sys.executable, "-m", "mitm407", "chain", "--port", "0", "--hop", "edge", "--hop", "core",
            "--hop-port", f"edge={edge_port}", "--hop-port", f"core={core_port}", "--hoplog-dir", str(tmp_path),
            "--", "--set", f"confdir={confdir}"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "addons")}
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "chain ready" not in out_path.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        output = out_path.read_text()
        assert f"mitm407 chain ready: client -> edge ({edge_port}) -> core ({core_port}) -> origin" in output
        done = curl("-x", f"http://127.0.0.1:{edge_port}", origin.url("/fixed"))
        assert done.stdout.endswith("\n200")
        # the client can also start at the second hop: it listens where it was told
        assert curl("-x", f"http://127.0.0.1:{core_port}", origin.url("/fixed-core")).stdout.endswith("\n200")
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C does
        assert proc.wait(timeout=30) == 0
    finally:
        stop_process(proc)
    for port in (edge_port, core_port):
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    assert [seen.path for seen in origin.seen if seen.path.startswith("/fixed")] == ["/fixed", "/fixed-core"]
