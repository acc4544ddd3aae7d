"""The 401-vs-407 teaching demo, run as users run it: real processes, a piped transcript."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from procs import REPO, mitm407_cli

pytestmark = pytest.mark.e2e

SECRETS = ("proxy-pass", "web-pass")
TOKENS = (base64.b64encode(b"proxy-user:proxy-pass").decode(), base64.b64encode(b"web-user:web-pass").decode())


def ports_of(transcript: str) -> list[int]:
    """The three ports on the topology line (proxy, web server, app)."""
    line = next(line for line in transcript.splitlines() if line.strip().startswith("client ──►"))
    return [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", line)]


PAD = " " * 28  # the transcript's right column


def hop_lines(step: list[str]) -> list[str]:
    """The Via / Proxy-Status lines of a step, and the line saying what they tell."""
    return [line for line in step if line.startswith((f"{PAD}Via", f"{PAD}Proxy-Status", f"{PAD}(Proxy-Status"))]


def assert_closed(ports: list[int]) -> None:
    for port in ports:
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


def test_piped_transcript():
    done = mitm407_cli("demo", "401-vs-407", timeout=90)
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b" not in out  # piped: plain text
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0] == "mitm407 demo: 401 vs 407"
    # step 1: the proxy answers 407; nothing behind it is reached
    step1 = lines[lines.index("Step 1 of 3: no credentials") :]
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
    step2 = lines[lines.index("Step 2 of 3: proxy credentials only") : lines.index(
        "Step 3 of 3: proxy and server credentials")]
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
    step3 = lines[lines.index("Step 3 of 3: proxy and server credentials") :]
    assert "                            Authorization: Basic ‹web-user:•••›" in step3
    assert "  web-server → app          forwarded (web-user accepted)" in step3
    assert "  app → client              HTTP/1.1 200 OK" in step3
    assert "  answered by app: app received neither Proxy-Authorization nor Authorization" in step3
    assert f"{PAD}(Via: the answer passed web-server, then corp-proxy; Proxy-Status: no hop reports an error)" in step3
    assert "unexpected" not in out
    for secret in SECRETS + TOKENS:
        assert secret not in out
    assert_closed(ports_of(out))


def test_ctrl_c_stops_every_process():
    env = {**os.environ, "PYTHONPATH": str(REPO / "addons")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mitm407", "demo", "401-vs-407", "--step"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        transcript = ""
        deadline = time.monotonic() + 60
        while "→ 407 = the PROXY" not in transcript and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            transcript += line
        assert "→ 407 = the PROXY" in transcript, transcript
        ports = ports_of(transcript)
        time.sleep(0.3)  # waiting for Enter now
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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
                            stdout=follower, stderr=subprocess.PIPE, env=env)
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
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode()
    assert ("\x1b[1;33mHTTP/1.1 407 Proxy Authentication Required\x1b[0m" in text) is ansi
    assert ("\x1b[" in text) is ansi
    assert "HTTP/1.1 401 Unauthorized" in text and "press Enter" not in text  # stdin is no terminal: no pauses
