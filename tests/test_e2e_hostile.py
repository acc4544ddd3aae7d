"""Hostile requests against a real mitmdump with addons/proxyauth.py, over raw sockets with timeouts.

Each must get a quick 407 (or a 400 from mitmproxy's own HTTP parser) and never a 500, a crash, a
traceback in the log, or a stall; the proxy keeps serving good requests afterwards.
"""

from __future__ import annotations

import base64
import socket
import time

import pytest

from procs import basic

pytestmark = pytest.mark.e2e

PASSWORD = "hostile-pw-81f2"
DEADLINE = 5.0  # seconds: "quick"
B64 = base64.b64encode


@pytest.fixture(scope="module")
def proxy(module_mitmdump, tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "hostile.yaml"
    path.write_text(
        f'version: 1\nname: hostile\nusers: {{alice: "{PASSWORD}"}}\n'
        "rules:\n  - match: {host: '*.intranet.example'}\n    auth: none\n"
    )
    return module_mitmdump(options={"scenario": str(path)})


def exchange(port: int, request: bytes, timeout: float = DEADLINE) -> tuple[int, bytes, float]:
    """Send one raw request; return (status, response head, seconds). Status 0: closed without answer."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    elapsed = time.monotonic() - start
    head = data.split(b"\r\n\r\n", 1)[0]
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, head, elapsed


def get(origin, *headers: bytes, target: bytes | None = None, method: bytes = b"GET") -> bytes:
    target = target or f"http://127.0.0.1:{origin.port}/hostile".encode()
    host = f"127.0.0.1:{origin.port}".encode()
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: " + host, *headers, b"", b""]
    return b"\r\n".join(lines)


HOSTILE = {
    "64KB-credentials": [b"Proxy-Authorization: Basic " + b"A" * 65536],
    "64KB-unknown-scheme": [b"Proxy-Authorization: " + b"X" * 65536],
    "invalid-utf8-header": [b"Proxy-Authorization: Basic \xff\xfe\xfd\xc3\x28"],
    "invalid-utf8-credentials": [b"Proxy-Authorization: Basic " + B64(b"\xff\xfe:\xc3\x28")],
    "invalid-utf8-scheme": [b"Proxy-Authorization: B\xe4sic " + B64(b"alice:x")],
    "nul-in-credentials": [b"Proxy-Authorization: Basic \x00\x00" + B64(b"alice:x")],
    "nul-in-decoded": [b"Proxy-Authorization: Basic " + B64(b"alice\x00:\x00" + PASSWORD.encode())],
    "thousands-of-commas": [b"Proxy-Authorization: " + b"," * 5000],
    "basic-then-commas": [b"Proxy-Authorization: Basic " + b"," * 5000],
    "auth-params-commas": [b"Proxy-Authorization: Digest " + b'a="b",' * 2000],
    "repeated-headers": [b"Proxy-Authorization: Basic " + B64(b"alice:wrong")] * 300,
    "repeated-empty": [b"Proxy-Authorization:"] * 300,
    "unknown-scheme": [b"Proxy-Authorization: Foo bar"],
    "negotiate-garbage": [b"Proxy-Authorization: Negotiate " + b"%%%" * 100],
    "ntlm-garbage": [b"Proxy-Authorization: NTLM TlRMTVNTUAAB"],
    "scheme-only": [b"Proxy-Authorization: Basic"],
    "lone-cr": [b"Proxy-Authorization: Basic a\rb"],
    "no-colon": [b"Proxy-Authorization: Basic " + B64(b"alice" + PASSWORD.encode())],
    "huge-user": [b"Proxy-Authorization: Basic " + B64(b"u" * 12000 + b":x")],
    "many-headers": [f"X-H{i}: {i}".encode() for i in range(500)],
    "obs-fold": [b"Proxy-Authorization: Basic", b" " + B64(b"alice:x")],
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_request_gets_quick_407_or_400(proxy, origin, name):
    status, head, elapsed = exchange(proxy.port, get(origin, *HOSTILE[name]))
    print(name, status, f"{elapsed * 1000:.0f} ms")
    assert status in (400, 407, 431), (name, head[:300])
    assert elapsed < DEADLINE
    if status == 407:
        assert b"Proxy-Authenticate: Basic realm=" in head


@pytest.mark.parametrize("name", ["64KB-credentials", "invalid-utf8-header", "repeated-headers", "thousands-of-commas"])
def test_hostile_connect(proxy, origin, name):
    target = f"127.0.0.1:{origin.port}".encode()
    status, head, elapsed = exchange(proxy.port, get(origin, *HOSTILE[name], target=target, method=b"CONNECT"))
    assert status in (400, 407, 431), (name, head[:300])
    assert elapsed < DEADLINE


def test_good_credential_after_a_hostile_one_in_the_same_headers(proxy, origin):
    """The first header of an offered scheme decides: garbage first means 407, good first means 200."""
    good = b"Proxy-Authorization: " + basic("alice", PASSWORD).encode()
    bad = b"Proxy-Authorization: Basic !!"
    assert exchange(proxy.port, get(origin, good, bad))[0] == 200
    assert exchange(proxy.port, get(origin, bad, good))[0] == 407


def test_spoofed_host_header_does_not_bypass_a_host_rule(proxy, origin):
    """mitmproxy connects to the request-target's host; a Host header naming a bypassed host must not
    skip authentication for a request that goes elsewhere."""
    request = get(origin, target=f"http://127.0.0.1:{origin.port}/spoofed".encode())
    status, head, _ = exchange(proxy.port, request.replace(b"Host: 127.0.0.1", b"Host: a.intranet.example", 1))
    assert status == 407, head[:300]
    assert not any(seen.path == "/spoofed" for seen in origin.seen)


def test_slow_partial_request_does_not_block_others(proxy, origin):
    """A client that sends half a header and stalls must not stall the proxy for everyone else."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE) as stalled:
        stalled.sendall(get(origin)[:30])
        good = get(origin, b"Proxy-Authorization: " + basic("alice", PASSWORD).encode())
        status, _, elapsed = exchange(proxy.port, good)
        assert (status, elapsed < DEADLINE) == (200, True)


def test_proxy_survived_without_500_or_traceback(proxy, origin):
    """Runs last in this module: the proxy still answers, and its log shows no crash."""
    assert proxy.proc.poll() is None
    status, _, _ = exchange(proxy.port, get(origin, b"Proxy-Authorization: " + basic("alice", PASSWORD).encode()))
    assert status == 200
    log = proxy.log
    assert "Traceback" not in log
    assert " 500 " not in log and "Internal Server Error" not in log
    assert PASSWORD not in log
