"""Real processes and servers for end-to-end tests.

Everything binds 127.0.0.1 on a free port, has a timeout, and is stopped by
the fixture that started it: SIGINT first (mitmdump under load can ignore
SIGTERM), SIGKILL after a grace period.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

from mitm407.teach import lab
from mitm407.teach.lab import free_port, make_tls_context, stop_process, wait_for_port  # noqa: F401 (re-exported)

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MITMDUMP = str(BIN / "mitmdump")
PROXYAUTH = str(REPO / "addons" / "proxyauth.py")
HOPLOG = str(REPO / "addons" / "hoplog.py")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# Every password a test uses, and its Basic tokens: the session's secret scan (tests/secretscan.py)
# greps every log the session wrote for them and fails the session on a hit.
SECRETS: set[str] = set()
SECRET_LABELS: dict[str, str] = {}  # secret -> whose it is, for the scan's report (never the secret)


def register_secret(user: str, password: str) -> str:
    """Remember a password (and its base64 forms, UTF-8 and Latin-1); returns the password."""
    forms = [(password, "password"), (quote(password, safe=""), "URL-quoted password")]
    for encoding in ("utf-8", "iso-8859-1"):
        with contextlib.suppress(UnicodeEncodeError):
            forms.append((base64.b64encode(f"{user}:{password}".encode(encoding)).decode(), "Basic token"))
    for secret, kind in forms:
        SECRETS.add(secret)
        SECRET_LABELS.setdefault(secret, f"{kind} of {user!r}")
    return password


# -- origin ---------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class _OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        handler = self.server.routes.get(self.path.split("?")[0])
        if handler is not None:
            status, headers, payload = handler(self, body)
        else:
            status, headers, payload = 200, {"Content-Type": "application/json"}, json.dumps(
                {"origin": "ok", "path": self.path, "method": self.command}
            ).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class Origin:
    """A local origin server that records every request's headers."""

    def __init__(self, tls_context: ssl.SSLContext | None = None) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _OriginHandler)
        self.server.daemon_threads = True
        self.server.seen = []  # type: ignore[attr-defined]
        self.server.routes = {}  # type: ignore[attr-defined]
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.scheme = "https" if tls_context else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def seen(self) -> list[Seen]:
        return self.server.seen  # type: ignore[attr-defined]

    @property
    def routes(self) -> dict:
        return self.server.routes  # type: ignore[attr-defined]

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- mitmdump -----------------------------------------------------------------


@dataclass
class Mitmdump(lab.Mitmdump):
    """A running ``mitmdump`` (by default with addons/proxyauth.py)."""

    args: list[str] = field(default_factory=list)

    def proxy_url(self, user: str | None = None, password: str | None = None) -> str:
        if user is None:
            return self.url
        from urllib.parse import quote

        return f"http://{quote(user, safe='')}:{quote(password or '', safe='')}@127.0.0.1:{self.port}"

    def wait_for_log(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log
            if text in log:
                return log
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in mitmdump log after {timeout}s:\n{self.log[-3000:]}")


def start_mitmdump(
    log_dir: Path,
    confdir: Path,
    options: dict[str, str] | None = None,
    scripts: tuple[str, ...] = (PROXYAUTH,),
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    name: str = "mitmdump",
    port: int | None = None,
    wait: bool = True,
) -> Mitmdump:
    port = port or free_port()
    args = [MITMDUMP, "--listen-host", "127.0.0.1", "-p", str(port), "--set", f"confdir={confdir}"]
    args += ["--set", "ssl_insecure=true"]
    if "connection_strategy" not in (options or {}):  # lazy unless a test needs mitmproxy's default (eager)
        args += ["--set", "connection_strategy=lazy"]
    for script in scripts:
        args += ["-s", script]
    for key, value in (options or {}).items():
        args += ["--set", f"{key}={value}"]
    args += extra or []
    log_path = log_dir / f"{name}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=REPO,
            start_new_session=True,
        )
    dump = Mitmdump(port, proc, log_path, confdir, args)
    if wait:
        dump.wait_ready()
    return dump


def run(args: list[str], timeout: float = 30.0, **kwargs) -> subprocess.CompletedProcess:
    """Run a client command with a timeout, capturing text output."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)


CHROMIUM = shutil.which("chromium")


def chromium(*args: str, tmp: Path) -> str:
    """Headless Debian chromium (as root: no sandbox), its profile in ``tmp``, nothing fetched; returns stdout."""
    assert CHROMIUM, "Debian chromium is not installed (make test installs it)"
    result = run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  f"--user-data-dir={tmp / 'chromium-profile'}", *args], timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def mitm407_cli(*args: str, timeout: float = 60.0, **kwargs) -> subprocess.CompletedProcess:
    """``python -m mitm407 ARGS`` from this checkout's addons/ (not whatever is installed)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "addons")}
    return run([sys.executable, "-m", "mitm407", *args], timeout=timeout, env=env, **kwargs)


CONTROL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy from the env


def control_api(port: int, method: str, path: str, body: bytes | None = None, token: str = "") -> tuple[int, dict]:
    """One request to a proxy's control API (``--set control_port=PORT``): (status, JSON answer)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with CONTROL_OPENER.open(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def advance_clock(port: int, seconds: float) -> float:
    """The proxy's clock jumps ``seconds`` forward (POST /clock): nonces and windows age, no test sleeps."""
    status, answer = control_api(port, "POST", "/clock", json.dumps({"advance": seconds}).encode())
    assert status == 200, answer
    return answer["offset"]


def curl(*args: str, timeout: float = 30.0, **kwargs) -> subprocess.CompletedProcess:
    """curl with a status line on stdout's last line: ``%{http_code}``; kwargs go to ``run`` (e.g. env)."""
    args_ = ["curl", "-sS", "--max-time", str(timeout - 5), "-w", "\n%{http_code}", *args]
    return run(args_, timeout=timeout, **kwargs)


def read_response(f) -> bytes:
    """One raw response (head and Content-Length body) from a socket file; b"" at EOF."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline()
        if not line:
            break
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (f.read(length) if length else b"")


def raw_exchange(port: int, requests_: list[bytes], timeout: float = 10.0) -> list[bytes]:
    """Send several raw requests on ONE connection; return each raw response."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")
        for request in requests_:
            s.sendall(request)
            out.append(read_response(f))
    return out


def exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """One raw request on a fresh connection; the raw response (b"" if the proxy closed it)."""
    return raw_exchange(port, [request], timeout)[0]
