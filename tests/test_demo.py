"""The 401-vs-407 teaching demo, run as users run it: real processes, a piped transcript."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs import REPO, curl, free_port, mitm407_cli, stop_process

pytestmark = pytest.mark.e2e

SECRETS = ("proxy-pass", "web-pass")
TOKENS = (base64.b64encode(b"proxy-user:proxy-pass").decode(), base64.b64encode(b"web-user:web-pass").decode())


def ports_of(transcript: str) -> list[int]:
    """The three ports on the topology line (proxy, web server, app)."""
    line = next(line for line in transcript.splitlines() if line.strip().startswith("client ──►"))
    return [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", line)]


PAD = " " * 28  # the transcript's right column
DEMO_GRACE = 30.0  # seconds for the demo to stop its hops after SIGINT, before SIGKILL


def hop_lines(step: list[str]) -> list[str]:
    """The Via / Proxy-Status lines of a step, and the line saying what they tell."""
    return [line for line in step if line.startswith((f"{PAD}Via", f"{PAD}Proxy-Status", f"{PAD}(Proxy-Status"))]


def assert_closed(ports: list[int]) -> None:
    for port in ports:
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


def test_piped_transcript(tmp_path: Path):
    handout = tmp_path / "handout"
    done = mitm407_cli("demo", "401-vs-407", "--handout", str(handout), timeout=90)
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b" not in out  # piped: plain text
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0] == "mitm407 demo: 401 vs 407"
    # step 1: the proxy answers 407; nothing behind it is reached
    step1 = lines[lines.index("Step 1 of 4: no credentials") :]
    assert step1[1].startswith("  client → corp-proxy       GET http://127.0.0.1:")
    assert "                            (no Proxy-Authorization, no Authorization)" in step1[:5]
    assert "  corp-proxy → client       HTTP/1.1 407 Proxy Authentication Required" in step1
    assert '                            Proxy-Authenticate: Basic realm="corp-proxy", charset="UTF-8"' in step1
    assert "  answered by corp-proxy: web-server and app never reached (the app saw 0 requests)" in step1
    assert hop_lines(step1)[:3] == [
        f"{PAD}Via: 1.1 corp-proxy",
        f'{PAD}Proxy-Status: corp-proxy; error=http_request_denied; details="no Proxy-Authorization header"',
        f"{PAD}(Proxy-Status names corp-proxy as the hop that answered: error=http_request_denied)",
    ]
    # step 2: proxy credentials only: the web server answers 401
    step2 = lines[lines.index("Step 2 of 4: proxy credentials only") : lines.index(
        "Step 3 of 4: proxy and server credentials")]
    assert "                            Proxy-Authorization: Basic ‹proxy-user:•••›" in step2
    assert "  corp-proxy → web-server   forwarded (proxy-user accepted)" in step2
    assert "  web-server → client       HTTP/1.1 401 Unauthorized" in step2
    assert '                            WWW-Authenticate: Basic realm="web-server", charset="UTF-8"' in step2
    assert "  answered by web-server: app never reached (the app saw 0 requests)" in step2
    assert hop_lines(step2) == [
        f"{PAD}Via: 1.1 web-server",
        f"{PAD}Via: 1.1 corp-proxy",
        f'{PAD}Proxy-Status: web-server; error=http_request_denied; details="no Authorization header"',
        f"{PAD}Proxy-Status: corp-proxy",
        f"{PAD}(Proxy-Status names web-server as the hop that answered: error=http_request_denied)",
    ]
    # step 3: both: the app answers 200 and saw neither credential
    step3 = lines[lines.index("Step 3 of 4: proxy and server credentials") : lines.index(
        "Step 4 of 4: HTTPS, through a CONNECT tunnel")]
    assert "                            Authorization: Basic ‹web-user:•••›" in step3
    assert "  web-server → app          forwarded (web-user accepted)" in step3
    assert "  app → client              HTTP/1.1 200 OK" in step3
    assert "  answered by app: app received neither Proxy-Authorization nor Authorization" in step3
    assert f"{PAD}(Via: the answer passed web-server, then corp-proxy; Proxy-Status: no hop reports an error)" in step3
    # step 4: HTTPS: 407 at the CONNECT, then a tunnel in which the proxy challenges nothing
    step4 = lines[lines.index("Step 4 of 4: HTTPS, through a CONNECT tunnel") :]
    connect = [line for line in step4 if "CONNECT 127.0.0.1:" in line]
    assert len(connect) == 2 and all(line.startswith("  client → corp-proxy       CONNECT") for line in connect)
    assert step4[2:5] == [
        "                            (no Proxy-Authorization)",
        "  corp-proxy → client       HTTP/1.1 407 Proxy Authentication Required",
        '                            Proxy-Authenticate: Basic realm="corp-proxy", charset="UTF-8"',
    ]
    assert "  corp-proxy → client       HTTP/1.1 200 Connection established" in step4
    assert "  client → web-server       GET /hello HTTP/1.1   (TLS, inside the tunnel)" in step4
    assert "                            (no Proxy-Authorization: the tunnel is already authenticated)" in step4
    assert "  app → client              HTTP/1.1 200 OK" in step4
    assert "  inside the tunnel: nothing challenged by the proxy; the app saw 1 request" in step4
    assert "unexpected" not in out
    for secret in SECRETS + TOKENS:
        assert secret not in out
    assert_closed(ports_of(out))
    assert_handout(handout, out)


def assert_handout(handout: Path, out: str) -> None:
    """The hop log of both hops (the CONNECTs too), its HTML report, the transcript, the CA; no secret in any."""
    assert f"Handout: {handout.resolve() / 'report.html'}" in out
    flows = [json.loads(line) for line in (handout / "hoplog.jsonl").read_text(encoding="utf-8").splitlines()]
    seen = [(f["hop"], f["method"], f["status"]) for f in flows]
    assert seen.count(("corp-proxy", "CONNECT", 407)) == 1
    assert seen.count(("corp-proxy", "CONNECT", 200)) == 1
    assert ("corp-proxy", "GET", 407) in seen and ("web-server", "GET", 401) in seen
    inside = [f for f in flows if f["hop"] == "corp-proxy" and f["method"] == "GET" and f["auth"]["result"] == "ok"
              and "connection" in f["auth"]["reason"]]
    assert len(inside) == 1 and inside[0]["status"] == 200  # the request inside the tunnel: not challenged
    report = (handout / "report.html").read_text(encoding="utf-8")
    assert report.startswith("<!DOCTYPE html>") or report.lstrip().lower().startswith("<!doctype html>")
    assert "CONNECT" in report and "corp-proxy" in report and "web-server" in report
    transcript = (handout / "transcript.txt").read_text(encoding="utf-8")
    assert transcript.startswith("mitm407 demo: 401 vs 407\n") and "Step 4 of 4" in transcript
    assert (handout / "mitmproxy-ca-cert.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    for path in handout.iterdir():
        text = path.read_text(encoding="utf-8", errors="replace")
        for secret in SECRETS + TOKENS:
            assert secret not in text, f"{secret!r} in {path.name}"


@contextlib.contextmanager
def demo_process(*args: str, stdin: int = subprocess.DEVNULL) -> Iterator[subprocess.Popen]:
    """``mitm407 demo 401-vs-407 ARGS`` with piped output; stopped on the way out if still running.

    SIGINT first, so the demo's handler stops the mitmdump hops it started in their own sessions
    (a SIGKILL would leave them running); SIGKILL only if it has not exited in time.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO / "addons")}
    proc = subprocess.Popen([sys.executable, "-m", "mitm407", "demo", "401-vs-407", *args], stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        yield proc
    finally:
        stop_process(proc, grace=DEMO_GRACE)


def interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    """Ctrl-C (SIGINT) while it waits; the rest of stdout and all of stderr."""
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=30)


def read_until(proc: subprocess.Popen, marker: str, timeout: float = 90) -> str:
    """Lines of the demo's stdout up to and including the first that contains ``marker``."""
    text = ""
    deadline = time.monotonic() + timeout
    while marker not in text and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        text += line
    assert marker in text, text
    return text


def test_ctrl_c_stops_every_process():
    with demo_process("--step", stdin=subprocess.PIPE) as proc:
        transcript = read_until(proc, "→ 407 = the PROXY", timeout=60)
        ports = ports_of(transcript)
        time.sleep(0.3)  # waiting for Enter now
        rest, err = interrupt(proc)
    assert proc.returncode == 130, err
    assert "Step 2" not in rest
    assert "interrupted; every process was stopped" in err
    assert "Traceback" not in err
    assert_closed(ports)


@pytest.mark.parametrize(("no_color", "ansi"), [(None, True), ("1", False)])
def test_colour_only_on_a_terminal_without_no_color(no_color: str | None, ansi: bool):
    import pty

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["PYTHONPATH"] = str(REPO / "addons")
    if no_color:
        env["NO_COLOR"] = no_color
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mitm407", "demo", "401-vs-407"], stdin=subprocess.DEVNULL,
                            stdout=follower, stderr=subprocess.PIPE, env=env, start_new_session=True)
    os.close(follower)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the demo exited
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
        stop_process(proc, grace=DEMO_GRACE)
    text = out.decode()
    assert ("\x1b[1;33mHTTP/1.1 407 Proxy Authentication Required\x1b[0m" in text) is ansi
    assert ("\x1b[" in text) is ansi
    assert "HTTP/1.1 401 Unauthorized" in text and "press Enter" not in text  # stdin is no terminal: no pauses


def two_free_ports() -> tuple[int, int]:
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def test_keep_leaves_both_hops_on_fixed_ports_until_sigint(tmp_path: Path):
    proxy_port, origin_port = two_free_ports()
    handout = tmp_path / "handout"
    with demo_process("--keep", "--proxy-port", str(proxy_port), "--origin-port", str(origin_port),
                      "--handout", str(handout)) as proc:
        transcript = read_until(proc, "Every request lands in the hop log")
        assert ports_of(transcript)[:2] == [proxy_port, origin_port]
        assert f"  corp-proxy  http://127.0.0.1:{proxy_port}  (a forward proxy: user proxy-user)" in transcript
        assert f"  curl -i -x http://127.0.0.1:{proxy_port} http://127.0.0.1:{origin_port}/hello" in transcript
        for secret in SECRETS + TOKENS:
            assert secret not in transcript
        site, proxy = f"127.0.0.1:{origin_port}", f"http://127.0.0.1:{proxy_port}"
        assert curl("-x", proxy, f"http://{site}/hello").stdout.endswith("\n407")
        assert curl("-x", proxy, "-U", "proxy-user:proxy-pass", f"http://{site}/hello").stdout.endswith("\n401")
        ok = curl("-x", proxy, "-U", "proxy-user:proxy-pass", "-u", "web-user:web-pass", f"http://{site}/hello")
        assert ok.stdout == "hello from the app behind web-server\n\n200"
        tunnel = curl("-x", proxy, "--cacert", str(handout / "mitmproxy-ca-cert.pem"), f"https://{site}/hello")
        assert tunnel.returncode == 56 and "CONNECT tunnel failed, response 407" in tunnel.stderr
        rest, err = interrupt(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "mitm407 demo: stopping corp-proxy, web-server and the app…" in rest
    assert_closed([proxy_port, origin_port])
    # the students' requests are in the hop log and in the report rewritten at the stop
    flows = [json.loads(line) for line in (handout / "hoplog.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sum(1 for f in flows if f["hop"] == "corp-proxy" and f["method"] == "CONNECT" and f["status"] == 407) == 2
    assert (handout / "report.html").stat().st_mtime >= (handout / "hoplog.jsonl").stat().st_mtime


def test_a_taken_port_is_named_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = mitm407_cli("demo", "401-vs-407", "--keep", "--proxy-port", str(port), timeout=30)
    assert done.returncode == 2
    assert done.stderr == f"mitm407 demo: --proxy-port: port {port} is in use; choose another one\n"
    assert done.stdout == ""
    same = mitm407_cli("demo", "401-vs-407", "--proxy-port", "18080", "--origin-port", "18080", timeout=30)
    assert same.returncode == 2 and "they need two ports" in same.stderr
