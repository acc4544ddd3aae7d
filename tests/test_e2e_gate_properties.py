"""Property, end to end: arbitrary bytes as Proxy-Authorization reach the origin only if they are valid credentials.

One real mitmdump for the module (Basic, Digest and NTLM offered). Hypothesis
throws bytes after each scheme's token: after ``Basic``, inside a Digest answer
that carries a live nonce, and as the NTLM type 3 of a handshake in progress,
over plain HTTP and CONNECT. Bounded examples; no timing in the assertions.
"""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digestclient import params_of
from ntlmclient import b64, client
from procs import basic, read_response, register_secret

pytestmark = pytest.mark.e2e

PASSWORD = register_secret("gate", "gate-prop-pw-91aa")  # tests/secretscan.py greps every log for it
EXAMPLES = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
# Header bytes a client can send on one line: anything but CR and LF (those would end the header).
LINE = st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@pytest.fixture(scope="module")
def proxy(module_mitmdump, tmp_path_factory):
    path = tmp_path_factory.mktemp("gate-props") / "all.yaml"
    path.write_text(f'version: 1\nname: gate-props\nusers: {{gate: "{PASSWORD}"}}\nschemes: [basic, digest, ntlm]\n',
                    encoding="utf-8")
    return module_mitmdump(options={"scenario": str(path)})


def head(origin, over: str, authorization: bytes | None) -> bytes:
    if over == "http":
        lines = [f"GET {origin.url('/prop')} HTTP/1.1".encode()]
    else:
        lines = [f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1".encode()]
    lines.append(f"Host: 127.0.0.1:{origin.port}".encode())
    if authorization is not None:
        lines.append(b"Proxy-Authorization: " + authorization)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0


def send(sock: socket.socket, reader, request: bytes) -> bytes:
    sock.sendall(request)
    return read_response(reader)


def check(proxy, origin, over: str, value: bytes, valid: bool, before: bytes | None = None) -> None:
    """Send ``value`` (after ``before`` on the same connection, if given); the origin sees it only if valid."""
    seen = len(origin.seen)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        reader = sock.makefile("rb")
        if before is not None:
            first = send(sock, reader, head(origin, over, before))
            assert status(first) == 407
            type2 = next(line for line in first.split(b"\r\n") if line.startswith(b"Proxy-Authenticate: NTLM "))
            assert type2
        raw = send(sock, reader, head(origin, over, value))
    passed = status(raw) == 200
    if over == "http":
        passed = passed and len(origin.seen) > seen
    assert passed == valid, (value[:80], raw[:200])
    if not valid:
        assert len(origin.seen) == seen


@pytest.fixture(scope="module")
def nonce(proxy, origin) -> str:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        raw = send(sock, sock.makefile("rb"), head(origin, "http", None))
    line = next(v for v in raw.split(b"\r\n") if v.lower().startswith(b"proxy-authenticate: digest"))
    return params_of(line.decode().split(" ", 2)[2])["nonce"]


OVER = st.sampled_from(["http", "connect"])


@EXAMPLES
@given(over=OVER, tail=st.one_of(LINE, st.just(b"VALID")))
def test_basic_bytes(proxy, origin, over, tail):
    value = basic("gate", PASSWORD).encode() if tail == b"VALID" else b"Basic " + tail
    check(proxy, origin, over, value, valid=tail == b"VALID")


@EXAMPLES
@given(over=OVER, realm=LINE, cnonce=LINE, response=LINE, uri=LINE)
def test_digest_bytes_with_a_live_nonce(proxy, origin, nonce, over, realm, cnonce, response, uri):
    value = (b'Digest username="gate", realm="' + realm + b'", nonce="' + nonce.encode() + b'", uri="' + uri
             + b'", qop=auth, nc=00000001, cnonce="' + cnonce + b'", response="' + response + b'"')
    check(proxy, origin, over, value, valid=False)


@EXAMPLES
@given(over=OVER, tail=LINE)
def test_digest_bytes_anywhere(proxy, origin, nonce, over, tail):
    check(proxy, origin, over, b"Digest " + tail, valid=False)


@EXAMPLES
@given(over=OVER, tail=LINE)
def test_ntlm_type3_bytes_mid_handshake(proxy, origin, over, tail):
    type1 = f"NTLM {b64(client('gate', PASSWORD).step())}".encode()
    check(proxy, origin, over, b"NTLM " + tail, valid=False, before=type1)
