"""End to end: hostile text from upstreams, clients and files, through real mitmdump, curl and the CLI.

Issue 14, "The other hostile input found": each test failed on the code before its fix.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from procs import curl, mitm407_cli, register_secret
from test_e2e_capture import finish_capture, start_capture

pytestmark = pytest.mark.e2e

INJECTION = b"rules: [{match: {}, auth: none}]"
U2028, U2029, NEL = "\u2028".encode(), "\u2029".encode(), "\x85".encode()  # UTF-8 bytes


def hostile_407() -> bytes:
    """A 407 whose realm, reason and headers carry every YAML line break, '#', quotes and an obs-fold."""
    return b"".join([
        b"HTTP/1.1 407 Denied" + U2028 + INJECTION + b" #'\"\x85x\r\n",
        b'Proxy-Authenticate: Basic realm="corp' + U2028 + INJECTION + U2029 + b"# \\\"q\\\" '" + NEL + b'"\r\n',
        b'Proxy-Authenticate: Basic realm="second"\r\n',
        b"X-Evil: a" + U2029 + INJECTION + b" # \"'\r\n",
        b"  folded " + NEL + INJECTION + b"\r\n",  # obs-fold: mitmproxy joins it with CR LF
        b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno",
    ])


@contextlib.contextmanager
def hostile_upstream(answer: bytes) -> Iterator[str]:
    """A one-trick upstream 'proxy': reads a request head, sends ``answer``, closes."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_capture_of_a_hostile_upstream_round_trips_without_injected_keys(tmp_path, origin):
    output = tmp_path / "hostile.yaml"
    with hostile_upstream(hostile_407()) as upstream:
        proc, port = start_capture(upstream, output, 1)
        assert curl("-x", f"http://127.0.0.1:{port}", origin.url("/x")).stdout.endswith("407")
        text = finish_capture(proc, output)
    doc = yaml.safe_load(text)
    assert "rules" not in doc and doc["default"] == "required"
    assert mitm407_cli("check", str(output)).returncode == 0
    # the network text is data, equal to what was received (CR LF of the fold as spaces: a replay sends one line)
    assert doc["realm"] == "corp\u2028rules: [{match: {}, auth: none}]\u2029# \"q\" '\x85"
    assert doc["response"]["reason"] == (b"Denied" + U2028 + INJECTION + b" #'\"\x85x").decode("iso-8859-1")
    evil = next(h["X-Evil"] for h in doc["response"]["headers"] if "X-Evil" in h)
    assert evil.startswith("a\u2029rules: [{match: {}, auth: none}] # \"'")
    assert evil.endswith("\x85" + INJECTION.decode())
    assert "\r" not in evil and "\n" not in evil
    for line in text.splitlines():
        assert not line.startswith("#") or "auth: none" not in line


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"request": {"method": "GET", "url": "http://example.com:99999/"}, "response": {"status": 407}},
         "HAR entry 1 (log.entries[1]): request.url 'http://example.com:99999/' has an invalid port"),
        ({"request": {"method": "GET", "url": "http://example.com/"}, "response": {"status": "abc"}},
         "HAR entry 1 (log.entries[1]): response.status 'abc' is not an HTTP status code"),
        ("junk", "HAR entry 1 (log.entries[1]): the entry is not an object"),
        ({"request": {"url": "http://e/"}, "response": {"status": 407, "content": {"text": "%", "encoding": "base64"}}},
         "HAR entry 1 (log.entries[1]): "),
    ],
    ids=["port-99999", "status-abc", "not-an-object", "bad-base64"],
)
def test_capture_from_a_broken_har_names_the_entry(tmp_path, entry, expected):
    good = {"request": {"method": "GET", "url": "http://example.com/"}, "response": {"status": 200}}
    har = tmp_path / "broken.har"
    har.write_text(json.dumps({"log": {"entries": [good, entry]}}), encoding="utf-8")
    result = mitm407_cli("capture", "--from", str(har), "-o", str(tmp_path / "out.yaml"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mitm407 capture: {expected}"), result.stderr
    assert not (tmp_path / "out.yaml").exists()


def test_squid_basic_html_407_escapes_the_requested_url(mitmdump_factory):
    dump = mitmdump_factory(options={"scenario": "squid-basic"})
    result = curl("-g", "-x", dump.url, "http://127.0.0.1:9/<script>alert(1)</script>?q=1")
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "407"
    assert "ERR_CACHE_ACCESS_DENIED" in body or "Cache Access Denied" in body
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


REDOS_SCENARIO = """\
version: 1
users: {ann: %s}
schemes: [basic]
rules:
  - match: {path_regex: '^/(a+)+$'}
    auth: none
"""


def test_a_pathological_path_regex_cannot_freeze_the_proxy(mitmdump_factory, origin, tmp_path):
    """64 'a's and a '!' would take Python's re about 2**64 steps; RE2 answers at once."""
    password = register_secret("ann", "redos-Pw-3")
    scenario = tmp_path / "redos.yaml"
    scenario.write_text(REDOS_SCENARIO % password, encoding="utf-8")
    dump = mitmdump_factory(options={"scenario": str(scenario)})
    attack = origin.url("/" + "a" * 64 + "!")
    with ThreadPoolExecutor(2) as pool:
        attacked = pool.submit(curl, "-x", dump.url, attack, timeout=40)
        normal = pool.submit(curl, "-x", dump.proxy_url("ann", password), origin.url("/after"), timeout=40)
        assert attacked.result().stdout.endswith("407")  # no match: the default asks for credentials
        assert normal.result().stdout.endswith("200")
    assert curl("-x", dump.url, origin.url("/aaa")).stdout.endswith("200")  # the rule still matches


# -- endless request heads -----------------------------------------------------------------------------
# (addons/proxyauth.py loads the limits addon: entry.all_addons() registers Limits first)


def stream_header_lines(port: int, budget: int) -> tuple[bytes, int]:
    """Send a request head that never ends, up to ``budget`` bytes; (what came back, bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
        line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        try:
            while sent < budget:
                sock.sendall(line * 16)
                sent += len(line) * 16
        except OSError:  # the proxy closed the connection: the limit worked
            pass
        sock.settimeout(30)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer, sent


def test_an_endless_request_head_is_cut_at_the_limit(mitmdump_factory, origin):
    dump = mitmdump_factory(options={"request_head_limit": "16384"})
    answer, sent = stream_header_lines(dump.port, budget=64 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert sent < 64 * 1024 * 1024  # the proxy stopped reading long before the budget
    dump.wait_for_log("answered 431, connection closed")
    assert curl("-x", dump.url, origin.url("/next")).stdout.endswith("407")  # still serving


def test_heads_under_the_limit_pass(mitmdump_factory, origin):
    dump = mitmdump_factory(options={"request_head_limit": "16384"})
    big = "x" * 12000  # a long cookie, as real browsers send
    assert curl("-x", dump.url, "-H", f"Cookie: c={big}", origin.url("/")).stdout.endswith("407")


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


def asked(port: int) -> tuple[socket.socket, bytes]:
    """A connection that sent one request; the first bytes of the answer (b"" if closed or reset)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(b"GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
        return sock, sock.recv(65536)
    except ConnectionResetError:
        return sock, b""


def test_a_client_over_its_connection_limit_is_closed_at_once(mitmdump_factory, origin):
    dump = mitmdump_factory(options={"client_connection_limit": "2"})
    first, answer = asked(dump.port)
    assert answer.startswith(b"HTTP/1.1 407")  # kept open (keep-alive)
    # the readiness probe's connection is gone: only ``first`` is open
    wait_until(lambda: dump.log.count("client connect") == dump.log.count("client disconnect") + 1)
    second, answer = asked(dump.port)
    assert answer.startswith(b"HTTP/1.1 407")
    third, answer = asked(dump.port)
    assert answer == b"", dump.log  # closed without an answer
    dump.wait_for_log("client_connection_limit")
    for sock in (first, second, third):
        sock.close()
    result = curl("--retry", "5", "--retry-all-errors", "-x", dump.url, origin.url("/after"))
    assert result.stdout.endswith("407")  # the held connections are gone: served again


# -- one upstream, one name ------------------------------------------------------------------------------


def test_report_names_one_upstream_once(mitmdump_factory, logdir, origin, tls_origin):
    """edge -> core: core's plain 407 carries Via "core"; its CONNECT refusal reaches edge as a bare 502."""
    from hoplogcheck import wait_for_record

    core = mitmdump_factory(options={"hop_name": "core"}, name="names-core")
    edge_log = logdir / f"names-edge-{core.port}.jsonl"
    edge = mitmdump_factory(options={"hop_name": "edge", "hoplog": str(edge_log)},
                            extra=["--mode", f"upstream:{core.url}"], name="names-edge")
    demo = ("--proxy-user", "demo:mitm407")  # the public demo user of the default scenario
    assert curl("-x", edge.url, *demo, origin.url("/plain")).stdout.endswith("407")
    assert curl("--cacert", edge.ca_file, "-x", edge.url, *demo, tls_origin.url("/tls")).stdout.endswith("502")
    wait_for_record(edge_log, lambda r: r["path"] == "/plain")
    wait_for_record(edge_log, lambda r: r["path"] == "/tls")
    data = json.loads(mitm407_cli("report", "--format", "json", str(edge_log)).stdout)
    upstream = [row for row in data["answered_by"] if row["kind"] == "upstream-proxy"]
    assert upstream == [{"kind": "upstream-proxy", "hop": "core", "address": f"127.0.0.1:{core.port}", "flows": 2}]
    text = mitm407_cli("report", str(edge_log)).stdout
    assert f"upstream-proxy core (127.0.0.1:{core.port})" in text
