"""End to end: the one decision gate fails closed and trusts a connection only for what it earned.

Each test is one hole found by attacking a real mitmdump (issue 14) and fails on
the code before the gate: an exception while deciding forwarded the request; a
missing bcrypt forwarded it; a refused CONNECT trusted its connection; an
NTLM-authenticated connection skipped the rules; ``-w`` wrote no flow.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from digestclient import params_of
from ntlmclient import RawClient, b64, client, token_in
from procs import MITMDUMP, basic, exchange, free_port, read_response, register_secret, run

pytestmark = pytest.mark.e2e

PASSWORD = register_secret("gate", "gate-pw-7d1e")  # tests/secretscan.py greps every log for it
REALM = "gate-realm"


def scenario(directory: Path, name: str, body: str) -> str:
    path = directory / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\nrealm: {REALM}\nusers: {{gate: \"{PASSWORD}\"}}\n{body}",
                    encoding="utf-8")
    return str(path)


def status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0


def get(origin, path: str, *headers: bytes) -> bytes:
    lines = [f"GET {origin.url(path)} HTTP/1.1".encode(), f"Host: 127.0.0.1:{origin.port}".encode(), *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def connect(port: int, *headers: bytes) -> bytes:
    lines = [f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode(), f"Host: 127.0.0.1:{port}".encode(), *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


# -- an exception while deciding: 500 from this proxy, never forwarded -------------------


@pytest.fixture(scope="module")
def digest_proxy(module_mitmdump, tmp_path_factory):
    path = scenario(tmp_path_factory.mktemp("gate-digest"), "gate-digest", "schemes: [digest]\n")
    return module_mitmdump(options={"scenario": path, "hop_name": "gatehop"})


def live_nonce(proxy, origin) -> str:
    raw = exchange(proxy.port, get(origin, "/challenge"))
    assert status(raw) == 407
    challenge = next(line for line in raw.split(b"\r\n") if line.lower().startswith(b"proxy-authenticate: digest"))
    return params_of(challenge.decode().split(" ", 2)[2])["nonce"]


HOSTILE_DIGEST = {
    "bad-uri": b'Digest username="gate", realm="gate-realm", nonce="{N}", uri="http://[", qop=auth, '
               b'nc=00000001, cnonce="a", response="0"',
    "ff-realm": b'Digest username="gate", realm="\xff\xfe", nonce="{N}", uri="{U}", qop=auth, '
                b'nc=00000001, cnonce="a", response="00000000000000000000000000000000"',
    "ff-cnonce": b'Digest username="gate", realm="gate-realm", nonce="{N}", uri="{U}", qop=auth, '
                 b'nc=00000001, cnonce="\xff", response="00000000000000000000000000000000"',
    "ff-response": b'Digest username="gate", realm="gate-realm", nonce="{N}", uri="{U}", qop=auth, '
                   b'nc=00000001, cnonce="a", response="\xff\xff"',
}


@pytest.mark.parametrize("case", sorted(HOSTILE_DIGEST))
@pytest.mark.parametrize("over", ["http", "connect"])
def test_hostile_digest_never_reaches_the_origin(digest_proxy, origin, case, over):
    nonce = live_nonce(digest_proxy, origin)
    uri = origin.url("/secret") if over == "http" else f"127.0.0.1:{origin.port}"
    value = HOSTILE_DIGEST[case].replace(b"{N}", nonce.encode()).replace(b"{U}", uri.encode())
    before = len(origin.seen)
    header = b"Proxy-Authorization: " + value
    request = get(origin, "/secret", header) if over == "http" else connect(origin.port, header)
    raw = exchange(digest_proxy.port, request)
    assert status(raw) in (407, 500), raw[:300]
    assert not raw.startswith(b"HTTP/1.1 200")  # no tunnel either
    if status(raw) == 500:
        assert b"Proxy-Status: gatehop; error=proxy_internal_error" in raw
        assert b"Traceback" not in raw  # the traceback is in the proxy log, never sent to the client
    assert len(origin.seen) == before
    assert status(exchange(digest_proxy.port, get(origin, "/after"))) == 407  # still serving


def test_the_error_is_logged_once_with_its_traceback(digest_proxy, origin):
    nonce = live_nonce(digest_proxy, origin)
    value = HOSTILE_DIGEST["bad-uri"].replace(b"{N}", nonce.encode())
    raw = exchange(digest_proxy.port, get(origin, "/logged", b"Proxy-Authorization: " + value))
    assert status(raw) == 500
    log = digest_proxy.wait_for_log("internal error while deciding")
    assert "Traceback" in log
    assert "Addon error" not in log  # mitmproxy never saw an exception: nothing it could forward


# -- a missing dependency: not forwarded ----------------------------------------------------


# The real bcrypt (passlib's self-test on mitmproxy 11 uses its hashpw), except that checkpw raises.
SHADOW_BCRYPT = """\
import os, sys
_here = os.path.dirname(os.path.abspath(__file__))
_shadow = sys.modules.pop(__name__)
_path = sys.path[:]
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
try:
    import bcrypt as _real
finally:
    sys.path[:] = _path
    sys.modules[__name__] = _shadow
globals().update({k: v for k, v in vars(_real).items() if not k.startswith("__") or k == "__about__"})


def checkpw(password, hashed):
    raise ModuleNotFoundError("No module named 'bcrypt._bcrypt' (test shadow)")
"""


def test_a_broken_bcrypt_does_not_forward(mitmdump_factory, origin, tmp_path):
    """bcrypt imports (the load-time check passes) but checking raises, as a broken install's missing
    extension does (ModuleNotFoundError): the request is answered here, not forwarded.

    (A bcrypt that does not import at all is refused when the scenario loads, with file:line:col.)
    """
    hashed = "$2b$04$" + "a" * 53  # a bcrypt-shaped hash: checking it needs the bcrypt package
    (tmp_path / "users.htpasswd").write_text(f"slow:{hashed}\n", encoding="utf-8")
    path = tmp_path / "bcrypt.yaml"
    path.write_text("version: 1\nname: no-bcrypt\nhtpasswd: users.htpasswd\nschemes: [basic]\n", encoding="utf-8")
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "bcrypt.py").write_text(SHADOW_BCRYPT)
    proxy = mitmdump_factory(options={"scenario": str(path)}, env={"PYTHONPATH": str(shadow)})
    before = len(origin.seen)
    raw = exchange(proxy.port, get(origin, "/bcrypt", f"Proxy-Authorization: {basic('slow', 'wrong')}".encode()))
    assert status(raw) in (407, 500), raw[:300]
    assert len(origin.seen) == before
    assert status(exchange(proxy.port, get(origin, "/after"))) == 407
    assert "test shadow" in proxy.wait_for_log("internal error while deciding")


# -- trust only what was earned ----------------------------------------------------------


RULES = """\
schemes: [basic]
rules:
  - {{match: {{port: {closed}}}, auth: none}}
  - {{match: {{path: [/secret]}}, auth: deny}}
"""


@pytest.fixture
def closed_port() -> int:
    return free_port()  # nothing listens there


def eager(mitmdump_factory, tmp_path, closed: int):
    """A proxy that connects before answering a CONNECT (mitmproxy's default), so a closed port fails it."""
    path = scenario(tmp_path, "gate-rules", RULES.format(closed=closed))
    return mitmdump_factory(options={"scenario": path, "connection_strategy": "eager"})


@pytest.mark.parametrize("credentials", [False, True])
def test_a_failed_connect_earns_its_connection_nothing(mitmdump_factory, origin, tmp_path, closed_port, credentials):
    proxy = eager(mitmdump_factory, tmp_path, closed_port)
    header = (f"Proxy-Authorization: {basic('gate', PASSWORD)}".encode(),) if credentials else ()
    target = closed_port if not credentials else free_port()
    before = len(origin.seen)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        f = s.makefile("rb")
        s.sendall(connect(target, *header))
        first = read_response(f)
        assert status(first) == 502, first[:300]  # nothing listens: mitmproxy could not connect
        s.sendall(get(origin, "/secret"))
        second = read_response(f)
    assert status(second) == 403, second[:300]  # the deny rule, not the failed tunnel's trust
    assert len(origin.seen) == before


NTLM_RULES = """\
schemes: [ntlm]
rules:
  - {match: {path: [/secret]}, auth: deny}
  - {match: {path: [/open]}, auth: none}
"""


def test_an_ntlm_connection_is_trusted_for_authentication_only(mitmdump_factory, origin, tmp_path):
    proxy = mitmdump_factory(options={"scenario": scenario(tmp_path, "gate-ntlm", NTLM_RULES)})
    context = client("gate", PASSWORD)
    conn = RawClient(proxy.port)

    def head(path: str, authorization: str | None = None) -> str:
        lines = [f"GET {origin.url(path)} HTTP/1.1", f"Host: 127.0.0.1:{origin.port}"]
        if authorization:
            lines.append(f"Proxy-Authorization: {authorization}")
        return "\r\n".join(lines) + "\r\n"

    try:
        first = conn.send(head("/leg1", f"NTLM {b64(context.step())}"))
        assert first[0] == 407
        assert conn.send(head("/leg3", f"NTLM {b64(context.step(token_in(first[1], 'NTLM')))}"))[0] == 200
        assert conn.send(head("/later"))[0] == 200  # authenticated by its connection
        before = len(origin.seen)
        assert conn.send(head("/secret"))[0] == 403  # the rule still applies
        assert len(origin.seen) == before
        assert conn.send(head("/open"))[0] == 200
    finally:
        conn.close()


# -- flow files round-trip -------------------------------------------------------------------


@pytest.fixture
def flows_file(mitmdump_factory, origin, tmp_path) -> Path:
    """A real ``mitmdump -w`` file with a 407 and a 200 (hop log on), after a refused CONNECT."""
    out = tmp_path / "out.flows"
    path = scenario(tmp_path, "gate-flows", "schemes: [basic]\n")
    proxy = mitmdump_factory(options={"scenario": path, "hoplog": str(tmp_path / "hops.jsonl")},
                             extra=["-w", str(out)])
    assert status(exchange(proxy.port, get(origin, "/refused"))) == 407
    ok = exchange(proxy.port, get(origin, "/ok", f"Proxy-Authorization: {basic('gate', PASSWORD)}".encode()))
    assert status(ok) == 200
    assert status(exchange(proxy.port, connect(origin.port))) == 407
    proxy.stop()
    assert "unserializable" not in proxy.log
    return out


def test_written_flows_read_back(flows_file):
    assert flows_file.stat().st_size > 0
    replay = run([MITMDUMP, "-n", "-r", str(flows_file)], timeout=60)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "/refused" in replay.stdout and "/ok" in replay.stdout
    code = (
        "import sys, json; from mitmproxy import io\n"
        "with open(sys.argv[1], 'rb') as f: flows = list(io.FlowReader(f).stream())\n"
        "print(json.dumps([[fl.request.path, fl.metadata.get('mitm407.auth')] for fl in flows]))\n"
    )
    read = subprocess.run([sys.executable, "-c", code, str(flows_file)], capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    records = dict(json.loads(read.stdout))
    assert records["/refused"]["result"] == "missing" and records["/ok"]["result"] == "ok"
    assert PASSWORD not in json.dumps(records)
    assert base64.b64encode(f"gate:{PASSWORD}".encode()).decode() not in flows_file.read_bytes().decode("latin-1")
