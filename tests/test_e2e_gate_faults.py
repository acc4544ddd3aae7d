"""End to end, fault injection: each scheme's parser and verifier raising, in turn, over a real mitmdump.

``tests/raising_entry.py`` patches them before the addons are built; a flag
file picks the one that raises. Every time: a 500 from this proxy with
``Proxy-Status: <hop>; error=proxy_internal_error``, the origin untouched, no
tunnel, ``auth.result: "error"`` in the hop log, and the proxy still serving.
"""

from __future__ import annotations

import json

import pytest

from hoplogcheck import read_hop_log
from ntlmclient import b64, client
from procs import REPO, basic, exchange, register_secret

pytestmark = pytest.mark.e2e

PASSWORD = register_secret("gate", "gate-fault-pw-40c9")  # tests/secretscan.py greps every log for it
TARGETS = ["basic.parse", "basic.verify", "digest.parse", "digest.verify", "ntlm.parse", "ntlm.verify"]


@pytest.fixture(scope="module")
def setup(module_mitmdump, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate-faults")
    path = folder / "all.yaml"
    path.write_text(f'version: 1\nname: gate-faults\nusers: {{gate: "{PASSWORD}"}}\nschemes: [basic, digest, ntlm]\n',
                    encoding="utf-8")
    flag, hops = folder / "raise", folder / "hops.jsonl"
    proxy = module_mitmdump(
        scripts=(str(REPO / "tests" / "raising_entry.py"),),
        options={"scenario": str(path), "hop_name": "faulthop", "hoplog": str(hops)},
        env={"MITM407_RAISE_FLAG": str(flag)},
    )
    return proxy, flag, hops


def credentials(target: str, uri: str) -> str:
    """Credentials the scheme must parse and verify: never a cached success (a cache hit parses nothing)."""
    scheme = target.split(".")[0]
    if scheme == "basic":
        return basic("gate", f"not-the-password-{uri}")
    if scheme == "digest":
        return f'Digest username="gate", realm="mitm407", nonce="n", uri="{uri}", response="0"'
    return f"NTLM {b64(client('gate', PASSWORD).step())}"


def request(origin, over: str, authorization: str | None) -> bytes:
    if over == "http":
        lines = [f"GET {origin.url('/injected')} HTTP/1.1", f"Host: 127.0.0.1:{origin.port}"]
    else:
        lines = [f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1", f"Host: 127.0.0.1:{origin.port}"]
    if authorization:
        lines.append(f"Proxy-Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("over", ["http", "connect"])
@pytest.mark.parametrize("target", TARGETS)
def test_a_raising_scheme_is_answered_here_and_never_forwarded(setup, origin, target, over):
    proxy, flag, hops = setup
    uri = origin.url("/injected") if over == "http" else f"127.0.0.1:{origin.port}"
    flag.write_text(target)
    try:
        before = len(origin.seen)
        raw = exchange(proxy.port, request(origin, over, credentials(target, uri)))
        assert raw.startswith(b"HTTP/1.1 500"), raw[:300]
        assert b"Proxy-Status: faulthop; error=proxy_internal_error" in raw
        assert b"fault injected" not in raw  # details go to the proxy log only
        assert len(origin.seen) == before
    finally:
        flag.write_text("")
    # the proxy still serves, with the same (now working) scheme objects
    ok = exchange(proxy.port, request(origin, "http", basic("gate", PASSWORD)))
    assert ok.startswith(b"HTTP/1.1 200"), ok[:300]
    assert f"fault injected in {target}" in proxy.wait_for_log(f"fault injected in {target}")


def test_the_hop_log_records_the_error(setup, origin):
    proxy, flag, hops = setup
    flag.write_text("basic.verify")
    try:
        assert exchange(proxy.port, request(origin, "http", basic("gate", PASSWORD))).startswith(b"HTTP/1.1 500")
    finally:
        flag.write_text("")
    proxy.stop()  # flushes and closes the hop log
    records = read_hop_log(hops)  # every line validates against the schema ("error" included)
    errors = [r for r in records if r["auth"] and r["auth"]["result"] == "error"]
    assert errors and all(r["status"] == 500 for r in errors)
    assert all(PASSWORD not in json.dumps(r) for r in records)
