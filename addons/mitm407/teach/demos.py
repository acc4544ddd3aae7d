"""The 401-vs-407 teaching demo: a proxy and a web server that both want credentials.

    client ──► corp-proxy (mitm407, 407) ──► web-server (mitm407 --mode reverse, 401) ──► app

Three requests, each printed hop by hop with the headers that matter: none
(the proxy answers 407, nothing behind it is reached), proxy credentials only
(the web server answers 401), both (the app answers 200, having seen neither
credential). Who answered is read from what came back (the refusing hop
names itself in its body and in its ``Proxy-Status`` member, the app counts
its requests), never assumed; the ``Via``/``Proxy-Status`` headers the hops
add are shown as they arrived.
A fourth step does the same for HTTPS: the 407 comes at the CONNECT, and
nothing inside the accepted tunnel is challenged by the proxy.
Credentials are shown as ``Basic ‹user:•••›``: the transcript never holds a
password, not even these public demo ones.

Classroom mode: ``keep`` leaves the proxy and the web server running on fixed
ports after the walk-through, prints what to try, and stops everything on
Ctrl-C. Every run leaves a handout: the hop log of both hops, its HTML report,
the transcript and mitmproxy's CA certificate (for ``curl --cacert``).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import re
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, TextIO

from mitm407.hoplog.attribution import parse_proxy_status, parse_via
from mitm407.hoplog.html import render_lines
from mitm407.scenario.load import load_scenario, resolve_scenario_path
from mitm407.teach.lab import Mitmdump, start_mitm407

PROXY_HOP, SERVER_HOP, APP = "corp-proxy", "web-server", "app"
APP_BODY = "hello from the app behind web-server\n"
REFUSED_BY = re.compile(r"^(\S+) \(mitm407\) refused this request: (.*?)\.?$", re.M)


# -- presentation -------------------------------------------------------------------


class Style:
    """ANSI colours when enabled, plain text otherwise (pipes, NO_COLOR)."""

    CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35",
             "cyan": "36"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *names: str) -> str:
        if not self.enabled or not names:
            return text
        return f"\x1b[{';'.join(self.CODES[n] for n in names)}m{text}\x1b[0m"

    def status(self, code: int, text: str) -> str:
        colour = {200: "green", 401: "magenta", 407: "yellow"}.get(code, "red")
        return self(text, "bold", colour)

    def hop(self, name: str) -> str:
        return self(name, "bold", "cyan" if name != "client" else "blue")


def redacted(value: str) -> str:
    """``Basic ‹user:•••›``: the scheme and the user, never the password."""
    scheme, _, token = value.partition(" ")
    try:
        user = base64.b64decode(token, validate=True).decode("utf-8").partition(":")[0]
    except ValueError:
        user = "?"
    return f"{scheme} ‹{user}:•••›"


# -- the app behind the web server ------------------------------------------------


class App:
    """The tiny origin application: answers 200 and remembers what reached it."""

    def __init__(self) -> None:
        received: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                received.append({k.lower(): v for k, v in self.headers.items()})
                body = APP_BODY.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- one exchange --------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def send_through_proxy(proxy_port: int, url: str, headers: dict[str, str]) -> Exchange:
    """One GET in absolute form to the proxy, as a proxy-aware client sends it."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=15)
    try:
        conn.request("GET", url, headers=headers)
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return Exchange(response.status, response.reason, response.getheaders(), body)
    finally:
        conn.close()


# -- the walk-through ---------------------------------------------------------------


@dataclass
class Lab:
    """The running demo: app, web server, proxy, and the credentials from their scenarios."""

    app: App
    server: Mitmdump
    proxy: Mitmdump
    proxy_user: tuple[str, str]
    server_user: tuple[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/hello"


def first_user(scenario_name: str) -> tuple[str, str]:
    scenario = load_scenario(resolve_scenario_path(scenario_name))
    user = next(iter(scenario.users.values()))
    return user.name, user.secret.cleartext or ""


@dataclass(frozen=True)
class Handout:
    """What a run leaves behind for the students: hop log, HTML report, transcript, CA certificate."""

    directory: Path

    @property
    def hoplog(self) -> Path:
        return self.directory / "hoplog.jsonl"

    @property
    def report(self) -> Path:
        return self.directory / "report.html"

    @property
    def transcript(self) -> Path:
        return self.directory / "transcript.txt"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "mitmproxy-ca-cert.pem"

    def write_report(self) -> None:
        """``mitm407 report --html`` of the hop log, written next to it."""
        with open(self.hoplog, encoding="utf-8", errors="replace") as lines:
            html = render_lines(lines, title="mitm407 demo: 401 vs 407 (hop log of corp-proxy and web-server)")
        self.report.write_text(html, encoding="utf-8")


def new_handout(directory: str | Path | None) -> Handout:
    """The chosen directory (created), or a new one under the system's temp folder; it is kept."""
    if directory:
        path = Path(directory).expanduser()
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="mitm407-demo-handout-"))
    handout = Handout(path.resolve())
    handout.hoplog.write_bytes(b"")  # this run's flows only
    return handout


@contextlib.contextmanager
def running_lab(out: TextIO, style: Style, handout: Handout, proxy_port: int | None = None,
                origin_port: int | None = None) -> Iterator[Lab]:
    """Start app, web server and proxy; stop every one of them on the way out, whatever happens.

    Both hops append to the handout's hop log (whole lines, one file: the report
    shows each flow hop by hop).
    """
    with tempfile.TemporaryDirectory(prefix="mitm407-demo-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        app = App()
        stack.callback(app.close)
        print(style("starting the app, web-server and corp-proxy (two mitmdump processes)…", "dim"), file=out)
        print(file=out)
        hoplog = {"hoplog": str(handout.hoplog)}
        server = start_mitm407(work, resolve_scenario_path("teach-origin"), name=SERVER_HOP, hop_name=SERVER_HOP,
                               mode=f"reverse:http://127.0.0.1:{app.port}", wait=False, port=origin_port,
                               options=hoplog, confdir=work / f"{SERVER_HOP}-conf")
        stack.callback(server.stop)
        proxy = start_mitm407(work, resolve_scenario_path("teach-proxy"), name=PROXY_HOP, hop_name=PROXY_HOP,
                              wait=False, port=proxy_port, options=hoplog, confdir=work / f"{PROXY_HOP}-conf")
        stack.callback(proxy.stop)
        server.wait_ready(SERVER_HOP)
        proxy.wait_ready(PROXY_HOP)
        # own confdirs: two mitmdumps creating one CA at once could each keep a different one
        shutil.copyfile(proxy.ca_file, handout.ca_cert)  # public certificate: for curl --cacert and browsers
        yield Lab(app, server, proxy, first_user("teach-proxy"), first_user("teach-origin"))


def basic(user: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


@dataclass(frozen=True)
class Step:
    title: str
    credentials: dict[str, str]  # header -> value sent by the client
    expected: int
    expected_hop: str
    lesson: str


def steps_of(lab: Lab) -> tuple[Step, ...]:
    proxy_creds = {"Proxy-Authorization": basic(lab.proxy_user)}
    return (
        Step("no credentials", {}, 407, PROXY_HOP,
             "407 = the PROXY wants credentials for itself. The request never left it."),
        Step("proxy credentials only", proxy_creds, 401, SERVER_HOP,
             "401 = the SERVER wants credentials. The proxy let the request through: its part was done."),
        Step("proxy and server credentials", {**proxy_creds, "Authorization": basic(lab.server_user)}, 200, APP,
             "Each hop took the header meant for it and removed it: the app saw neither credential."),
    )


class Printer:
    """Two-column transcript lines: who talks to whom on the left, what is said on the right."""

    def __init__(self, out: TextIO, style: Style) -> None:
        self.out, self.style = out, style

    def __call__(self, text: str = "") -> None:
        print(text, file=self.out)

    def line(self, left: str, right: str = "") -> None:
        self(f"  {left}{' ' * max(1, 26 - len(strip_ansi(left)))}{right}".rstrip())

    def arrow(self, a: str, b: str) -> str:
        return f"{self.style.hop(a)} → {self.style.hop(b)}"


def show_topology(lab: Lab, say: Printer) -> None:
    hop = say.style.hop
    say(f"  {hop('client')} ──► {hop(PROXY_HOP)} 127.0.0.1:{lab.proxy.port} ──► "
        f"{hop(SERVER_HOP)} 127.0.0.1:{lab.server.port} ──► {hop(APP)} 127.0.0.1:{lab.app.port}")
    say(f"  {PROXY_HOP}: a forward proxy; wants Proxy-Authorization (user {lab.proxy_user[0]}), "
        "refuses with 407 + Proxy-Authenticate")
    say(f"  {SERVER_HOP}: the web server (mitm407 in reverse mode); wants Authorization "
        f"(user {lab.server_user[0]}), refuses with 401 + WWW-Authenticate")


def hop_trace(answer: Exchange) -> str:
    """What Via and Proxy-Status say: the member with error= names the hop that answered (RFC 9209)."""
    refusing = [e for e in parse_proxy_status(answer.header("Proxy-Status")) if e.error]
    if refusing:
        return f"(Proxy-Status names {refusing[-1].hop} as the hop that answered: error={refusing[-1].error})"
    passed = ", then ".join(e.received_by for e in parse_via(answer.header("Via")))
    return f"(Via: the answer passed {passed}; Proxy-Status: no hop reports an error)"


def run_step(lab: Lab, step: Step, say: Printer) -> bool:
    """Send one request, print it hop by hop; True when the expected hop answered as taught."""
    style = say.style
    host = f"127.0.0.1:{lab.server.port}"
    say.line(say.arrow("client", PROXY_HOP), f"GET {lab.url} HTTP/1.1")
    say.line("", f"Host: {host}")
    for name, value in step.credentials.items():
        say.line("", style(f"{name}: {redacted(value)}", "dim"))
    if not step.credentials:
        say.line("", style("(no Proxy-Authorization, no Authorization)", "dim"))

    before = len(lab.app.received)
    answer = send_through_proxy(lab.proxy.port, lab.url, {"Host": host, **step.credentials})
    reached = len(lab.app.received) - before
    refused = REFUSED_BY.search(answer.body)
    answered_by = refused.group(1) if refused else (APP if reached else "?")

    if answered_by != PROXY_HOP:
        say.line(say.arrow(PROXY_HOP, SERVER_HOP), style(f"forwarded ({lab.proxy_user[0]} accepted)", "dim"))
    if answered_by == APP:
        say.line(say.arrow(SERVER_HOP, APP), style(f"forwarded ({lab.server_user[0]} accepted)", "dim"))
    say.line(say.arrow(answered_by, "client"), style.status(answer.status, f"HTTP/1.1 {answer.status} {answer.reason}"))
    for name in ("Proxy-Authenticate", "WWW-Authenticate", "Via", "Proxy-Status"):
        for value in answer.header(name):
            say.line("", f"{name}: {value}")
    say.line("", style(hop_trace(answer), "dim"))
    if refused or answer.status == 200:
        body = refused.group(0) if refused else answer.body.strip()
        say.line("", style(f'body: "{body}"', "dim"))

    leaked: list[str] = []
    if answered_by == APP:
        leaked = [h for h in ("proxy-authorization", "authorization") if h in lab.app.received[-1]]
        where = "app received " + (f"LEAKED {', '.join(leaked)}" if leaked else
                                   "neither Proxy-Authorization nor Authorization")
    else:
        behind = f"{SERVER_HOP} and {APP}" if answered_by == PROXY_HOP else APP
        where = f"{behind} never reached (the app saw {reached} requests)"
    say(f"  answered by {style.hop(answered_by)}: {where}")
    say(f"  {style('→', 'bold')} {step.lesson}")
    if answer.status == step.expected and answered_by == step.expected_hop and not leaked:
        return True
    say(style(f"  unexpected: wanted {step.expected} from {step.expected_hop}", "bold", "red"))
    return False

# -- the HTTPS step: CONNECT ---------------------------------------------------------


def read_head(stream: BinaryIO) -> Exchange:
    """A response head (and its Content-Length body) from a raw stream; a tunnel's bytes stay unread."""
    status_line = stream.readline().decode("iso-8859-1").rstrip("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        raise OSError(f"not an HTTP response: {status_line!r}")
    headers: list[tuple[str, str]] = []
    while (line := stream.readline().decode("iso-8859-1").rstrip("\r\n")):
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    length = next((int(v) for k, v in headers if k.lower() == "content-length" and v.isdigit()), 0)
    body = stream.read(length).decode("utf-8", "replace") if length else ""
    return Exchange(int(code), reason, headers, body)


def send_raw(sock: socket.socket | ssl.SSLSocket, head: str, headers: dict[str, str]) -> Exchange:
    lines = [head, *(f"{name}: {value}" for name, value in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1"))
    return read_head(sock.makefile("rb", buffering=0))


def show_answer(say: Printer, who: str, answer: Exchange, names: tuple[str, ...]) -> None:
    say.line(say.arrow(who, "client"), say.style.status(answer.status, f"HTTP/1.1 {answer.status} {answer.reason}"))
    for name in names:
        for value in answer.header(name):
            say.line("", f"{name}: {value}")


def run_connect_step(lab: Lab, say: Printer) -> bool:
    """CONNECT without, then with proxy credentials; one request inside the tunnel, with server credentials only.

    True when the proxy refused the first CONNECT with 407, opened the second, and
    the request inside the tunnel reached the app without being challenged by it.
    """
    style = say.style
    target = f"127.0.0.1:{lab.server.port}"
    connect = f"CONNECT {target} HTTP/1.1"
    proxy_auth = {"Proxy-Authorization": basic(lab.proxy_user)}
    say.line(say.arrow("client", PROXY_HOP), connect)
    say.line("", style("(no Proxy-Authorization)", "dim"))
    with socket.create_connection(("127.0.0.1", lab.proxy.port), timeout=15) as sock:
        refused = send_raw(sock, connect, {"Host": target})
    show_answer(say, PROXY_HOP, refused, ("Proxy-Authenticate", "Proxy-Status"))
    say(f"  {style('→', 'bold')} The proxy refuses the tunnel itself: 407 at the CONNECT, before any TLS.")

    say.line(say.arrow("client", PROXY_HOP), connect)
    say.line("", style(f"Proxy-Authorization: {redacted(proxy_auth['Proxy-Authorization'])}", "dim"))
    before = len(lab.app.received)
    context = ssl.create_default_context(cafile=lab.proxy.ca_file)
    with socket.create_connection(("127.0.0.1", lab.proxy.port), timeout=15) as sock:
        opened = send_raw(sock, connect, {"Host": target, **proxy_auth})
        show_answer(say, PROXY_HOP, opened, ())
        inner = None
        if opened.status == 200:
            with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                server_auth = {"Authorization": basic(lab.server_user)}
                inside = style("(TLS, inside the tunnel)", "dim")
                say.line(say.arrow("client", SERVER_HOP), f"GET /hello HTTP/1.1   {inside}")
                say.line("", style(f"Authorization: {redacted(server_auth['Authorization'])}", "dim"))
                say.line("", style("(no Proxy-Authorization: the tunnel is already authenticated)", "dim"))
                inner = send_raw(tls, "GET /hello HTTP/1.1", {"Host": target, **server_auth, "Connection": "close"})
            show_answer(say, APP, inner, ())
    reached = len(lab.app.received) - before
    leaked = reached and "proxy-authorization" in lab.app.received[-1]
    challenged_inside = inner is not None and inner.status == 407
    verdict = "the proxy challenged a request" if challenged_inside else "nothing challenged by the proxy"
    say(f"  inside the tunnel: {verdict}; the app saw {reached} request{'s' if reached != 1 else ''}"
        f"{', LEAKED Proxy-Authorization' if leaked else ''}")
    say(f"  {style('→', 'bold')} HTTPS: the proxy authenticates the CONNECT once; what travels inside the tunnel "
        "is the client's business with the server (401/Authorization), never the proxy's.")
    ok = (refused.status == 407 and opened.status == 200 and inner is not None and inner.status == 200
          and reached == 1 and not leaked)
    if not ok:
        say(style("  unexpected: wanted 407 at the first CONNECT, 200 at the second, 200 from the app inside",
                  "bold", "red"))
    return ok


def walk_401_vs_407(lab: Lab, out: TextIO, style: Style, pause: Callable[[], None]) -> int:
    """Print the three steps; return 0 when every hop answered as taught, 1 otherwise."""
    say = Printer(out, style)
    show_topology(lab, say)
    steps = steps_of(lab)
    total = len(steps) + 1
    failures = 0
    for number, step in enumerate(steps, 1):
        say()
        say(style(f"Step {number} of {total}: {step.title}", "bold"))
        failures += not run_step(lab, step, say)
        pause()
    say()
    say(style(f"Step {total} of {total}: HTTPS, through a CONNECT tunnel", "bold"))
    failures += not run_connect_step(lab, say)
    say()
    say("Summary: 407 + Proxy-Authenticate comes from a proxy and is answered with Proxy-Authorization "
        "(consumed by that proxy); 401 + WWW-Authenticate comes from the server and is answered with "
        "Authorization (end to end).")
    return 1 if failures else 0


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT unwind like Ctrl-C, so the processes are stopped either way.

    SIGINT too: a shell starts a background job with SIGINT ignored, and Python
    keeps it ignored; a classroom run under ``&`` must still stop on ``kill -INT``.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Tee:
    """Writes to the terminal and keeps a plain-text copy for the handout's transcript."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.parts = out, []  # type: list[str]

    def write(self, text: str) -> int:
        self.parts.append(strip_ansi(text))
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()

    def text(self) -> str:
        return "".join(self.parts)


def what_to_try(lab: Lab, handout: Handout, say: Printer) -> None:
    """Classroom mode: the running hops, and commands to continue with (passwords are typed, not printed)."""
    hop = say.style.hop
    proxy, site = f"http://127.0.0.1:{lab.proxy.port}", f"127.0.0.1:{lab.server.port}"
    pu, su = lab.proxy_user[0], lab.server_user[0]
    say(say.style("Classroom mode: corp-proxy and web-server keep running. Ctrl-C stops them.", "bold"))
    say(f"  {hop(PROXY_HOP)}  {proxy}  (a forward proxy: user {pu})")
    say(f"  {hop(SERVER_HOP)}  http://{site}/hello  (the web site: user {su})")
    say("  The passwords are the login_hint lines of scenarios/teach-proxy.yaml and teach-origin.yaml;")
    say("  curl asks for them when -U/-u name only the user.")
    say()
    say("Try:")
    for command, result in (
        (f"curl -i -x {proxy} http://{site}/hello", "407 from corp-proxy"),
        (f"curl -i -x {proxy} -U {pu} http://{site}/hello", "401 from web-server"),
        (f"curl -i -x {proxy} -U {pu} -u {su} http://{site}/hello", "200 from the app"),
        (f"curl -i -x {proxy} --cacert {handout.ca_cert} https://{site}/hello", "407 at the CONNECT (curl exit 56)"),
        (f"curl -i -x {proxy} -U {pu} -u {su} --cacert {handout.ca_cert} https://{site}/hello",
         "200 through the tunnel"),
    ):
        say(f"  {command}")
        say(say.style(f"      → {result}", "dim"))
    say(f"  Browser: HTTP and HTTPS proxy 127.0.0.1 port {lab.proxy.port}, open http://{site}/hello:")
    say("      first the proxy's login dialog (407), then the site's (401).")
    say(f"  Every request lands in the hop log {handout.hoplog}; the report is rewritten when you stop.")


def keep_running(lab: Lab) -> int:
    """Wait for Ctrl-C (or SIGTERM); 0 then, 1 when a hop exits on its own."""
    try:
        while True:
            for name, dump in ((PROXY_HOP, lab.proxy), (SERVER_HOP, lab.server)):
                if dump.proc.poll() is not None:
                    print(f"mitm407 demo: {name} exited with status {dump.proc.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0


def run_401_vs_407(out: TextIO = sys.stdout, colour: bool = False, step: bool = False, keep: bool = False,
                   proxy_port: int | None = None, origin_port: int | None = None,
                   handout_dir: str | Path | None = None) -> int:
    """The walk-through; with ``keep``, classroom mode after it. Always leaves a handout (path printed)."""
    style = Style(colour)
    tee = Tee(out)
    handout = new_handout(handout_dir)

    def pause() -> None:
        if step:
            with contextlib.suppress(EOFError):
                input(style("  press Enter for the next step ", "dim"))

    print(style("mitm407 demo: 401 vs 407", "bold"), file=tee)
    completed = False
    try:
        with signals_as_interrupt(), running_lab(tee, style, handout, proxy_port, origin_port) as lab:
            status = walk_401_vs_407(lab, tee, style, pause)
            if keep:
                say = Printer(tee, style)
                say()
                what_to_try(lab, handout, say)
                status = keep_running(lab) or status
                print(file=tee)
                print("mitm407 demo: stopping corp-proxy, web-server and the app…", file=tee)
        completed = True
    finally:  # the processes are stopped: the hop log is complete
        handout.transcript.write_text(tee.text(), encoding="utf-8")
        handout.write_report()
    if completed:
        print(file=tee)
        print(f"Handout: {handout.report} (the hop log as a report: mitm407 report --html)", file=out)
        print(f"         {handout.hoplog} (hop log), {handout.transcript} (this transcript),", file=out)
        print(f"         {handout.ca_cert} (the proxy's CA, for --cacert)", file=out)
    return status


DEMOS: dict[str, Callable[..., int]] = {"401-vs-407": run_401_vs_407}
