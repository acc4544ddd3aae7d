"""End to end: NTLM and Negotiate through a real mitmdump, with curl and a pyspnego client on raw sockets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import spnego

from ntlmclient import RawClient, b64, token_in
from procs import curl, read_response, register_secret

pytestmark = pytest.mark.e2e

ALICE_PW = register_secret("alice", "s3cret:with:colons")  # tests/secretscan.py greps every log for them
register_secret("bob", "hunter2")
GSS_NTLMSSP = Path("/usr/lib/x86_64-linux-gnu/gssntlmssp/gssntlmssp.so")

SCENARIO = """\
version: 1
name: e2e-ntlm
users:
  alice: {{password: "{alice}", domain: CORP}}
  bob: hunter2
schemes: [{schemes}]
ntlm: &ntlm {{domain: CORP, domain_check: optional}}
{negotiate}
"""


def write_scenario(directory: Path, name: str, schemes: str) -> Path:
    path = directory / f"{name}.yaml"
    negotiate = "negotiate: *ntlm" if "negotiate" in schemes else ""
    path.write_text(SCENARIO.format(alice=ALICE_PW, schemes=schemes, negotiate=negotiate), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ntlm-scenarios")


@pytest.fixture(scope="module")
def proxy(module_mitmdump):
    """The shipped scenarios/ntlm.yaml: NTLM only."""
    return module_mitmdump(options={"scenario": "ntlm"})


@pytest.fixture(scope="module")
def proxy_all(module_mitmdump):
    """The shipped scenarios/negotiate-ntlm.yaml: Negotiate, NTLM and Basic offered, in that order."""
    return module_mitmdump(options={"scenario": "negotiate-ntlm"})


def status_of(result) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1])


def count(proxy, text: str) -> int:
    return proxy.log.count(text)


CONTINUE = "-> 407: continue (NTLM type 2 challenge sent"
AUTHENTICATED = "-> connection authenticated ("


# -- curl ------------------------------------------------------------------------------


def test_curl_ntlm_plain_http(proxy, origin):
    before = count(proxy, CONTINUE)
    result = curl("-x", proxy.url, "--proxy-ntlm", "-U", f"CORP\\alice:{ALICE_PW}", origin.url("/ntlm-http"))
    assert status_of(result) == 200, result.stderr
    assert origin.seen[-1].path.endswith("/ntlm-http")
    assert "proxy-authorization" not in origin.seen[-1].headers
    proxy.wait_for_log("connection authenticated (NTLMv2 handshake completed for 'CORP\\alice'")
    assert count(proxy, CONTINUE) == before + 1


def test_curl_ntlm_connect_tls(proxy, tls_origin):
    result = curl(
        "--cacert", proxy.ca_file, "-x", proxy.url, "--proxy-ntlm", "-U", "bob:hunter2", tls_origin.url("/ntlm-tls")
    )
    assert status_of(result) == 200, result.stderr
    assert tls_origin.seen[-1].path == "/ntlm-tls"
    assert "proxy-authorization" not in tls_origin.seen[-1].headers
    log = proxy.wait_for_log("CONNECT -> connection authenticated (NTLMv2 handshake completed for 'bob'")
    assert f"CONNECT 127.0.0.1:{tls_origin.port} -> 407: continue" in log


def test_curl_ntlm_wrong_password(proxy, origin):
    before = len(origin.seen)
    result = curl("-x", proxy.url, "--proxy-ntlm", "-U", "bob:wrong", origin.url("/nope"))
    assert status_of(result) == 407
    assert len(origin.seen) == before
    proxy.wait_for_log("-> 407: bad-credentials (wrong password for NTLM user 'bob')")


def test_curl_one_connection_one_handshake_new_connection_rechallenged(proxy, origin):
    """Two URLs in one curl share the connection: one handshake. A second curl handshakes again."""
    before = count(proxy, CONTINUE)
    urls = [origin.url("/one"), origin.url("/two")]
    result = curl("-x", proxy.url, "--proxy-ntlm", "-U", "bob:hunter2", *urls)
    assert result.stdout.count("200") >= 1 and status_of(result) == 200, result.stderr
    assert [s.path for s in origin.seen[-2:]] == ["/one", "/two"]
    assert count(proxy, CONTINUE) == before + 1
    assert status_of(curl("-x", proxy.url, "--proxy-ntlm", "-U", "bob:hunter2", urls[0])) == 200
    assert count(proxy, CONTINUE) == before + 2


def test_curl_anyauth_picks_ntlm_over_basic(mitmdump_factory, scenarios, origin):
    dump = mitmdump_factory(options={"scenario": str(write_scenario(scenarios, "nb", "ntlm, basic"))})
    result = curl("-x", dump.url, "--proxy-anyauth", "-U", "bob:hunter2", origin.url("/any"))
    assert status_of(result) == 200, result.stderr
    log = dump.wait_for_log("connection authenticated (NTLMv2 handshake completed for 'bob'")
    assert log.count("-> 407: missing (no Proxy-Authorization header)") == 1  # anyauth probes first
    assert log.count(CONTINUE) == 1


def test_hop_log_shows_the_connection_binding(mitmdump_factory, logdir, origin):
    """One handshake, then a request that passed because its connection was authenticated."""
    from hoplogcheck import read_hop_log, wait_for_record

    hoplog = logdir / "hops-ntlm.jsonl"
    dump = mitmdump_factory(options={"scenario": "ntlm", "hoplog": str(hoplog)})
    urls = [origin.url("/hop-one"), origin.url("/hop-two")]
    assert status_of(curl("-x", dump.url, "--proxy-ntlm", "-U", "bob:hunter2", *urls)) == 200
    wait_for_record(hoplog, lambda r: r["path"] == "/hop-two")
    records = [(r["path"], r["status"], r["auth"]["result"], r["auth"]["reason"]) for r in read_hop_log(hoplog)]
    assert records == [
        ("/hop-one", 407, "continue", "NTLM type 2 challenge sent; the type 3 must follow on this connection"),
        ("/hop-one", 200, "ok", "NTLMv2 handshake completed for 'bob'; connection authenticated"),
        ("/hop-two", 200, "ok", "authenticated by its connection"),
    ]
    lines = read_hop_log(hoplog)
    assert len({r["client"]["connection_id"] for r in lines}) == 1
    assert [r["answered_by"]["kind"] for r in lines] == ["this-proxy", "origin", "origin"]
    assert {r["auth"]["scheme"] for r in lines} == {"ntlm"} and lines[2]["auth"]["user"] == "bob"


def curl_env_without_gss_credentials() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("NTLM_USER_FILE", "KRB5CCNAME")}


def test_curl_anyauth_prefers_negotiate_and_does_not_fall_back(proxy_all, origin):
    """curl 7.88 picks Negotiate (its best) and, with no GSS credentials, gives up instead of trying NTLM."""
    missing, handshakes = count(proxy_all, "-> 407: missing (no Proxy-"), count(proxy_all, CONTINUE)
    result = curl(
        "-x", proxy_all.url, "--proxy-anyauth", "-U", "bob:hunter2", origin.url("/anyauth"),
        env=curl_env_without_gss_credentials(),
    )
    assert status_of(result) == 407
    assert "gss_init_sec_context() failed" in result.stderr or result.stderr == ""
    proxy_all.wait_for_log("-> 407: missing")
    assert count(proxy_all, "-> 407: missing (no Proxy-") == missing + 2  # probe, then a retry with nothing
    assert count(proxy_all, CONTINUE) == handshakes  # never tried NTLM


@pytest.mark.skipif(not GSS_NTLMSSP.exists(), reason="Debian package gss-ntlmssp not installed")
def test_curl_negotiate_spnego_ntlm_via_gss_ntlmssp(proxy_all, origin, tmp_path):
    """curl's GSS-API SPNEGO with the gss-ntlmssp mechanism: an independent SPNEGO/NTLM client."""
    creds = tmp_path / "client-ntlm-users"
    creds.write_text(":bob:hunter2\n")
    creds.chmod(0o600)
    env = {**os.environ, "NTLM_USER_FILE": str(creds), "USER": "bob"}
    result = curl("-x", proxy_all.url, "--proxy-negotiate", "-U", ":", origin.url("/negotiate"), env=env)
    assert status_of(result) == 200, result.stderr
    proxy_all.wait_for_log("GET -> connection authenticated (NTLMv2 handshake completed for 'bob'")
    assert "-> 407: continue (NTLM type 2 challenge sent" in proxy_all.log
    creds.write_text(":bob:wrong\n")
    result = curl("-x", proxy_all.url, "--proxy-negotiate", "-U", ":", origin.url("/negotiate"), env=env)
    assert status_of(result) == 407
    proxy_all.wait_for_log("-> 407: bad-credentials (wrong password for NTLM user 'bob')")


# -- a pyspnego client on raw sockets ------------------------------------------------------


def get(origin, path: str, auth: str | None = None) -> str:
    target = origin.url(path)
    extra = f"Proxy-Authorization: {auth}\r\n" if auth else ""
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n{extra}"


def connect(port: int, auth: str) -> str:
    return f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nProxy-Authorization: {auth}\r\n"


@pytest.mark.parametrize("protocol", ["ntlm", "negotiate"])
def test_pyspnego_client_binds_the_connection(proxy_all, origin, protocol):
    scheme = "NTLM" if protocol == "ntlm" else "Negotiate"
    context = spnego.client("alice", ALICE_PW, hostname="proxy", service="HTTP", protocol=protocol)
    conn = RawClient(proxy_all.port)
    try:
        status, headers, _ = conn.send(get(origin, "/leg1", f"{scheme} {b64(context.step())}"))
        assert status == 407
        challenge = token_in(headers, scheme)  # only the handshake's challenge, nothing else
        status, _, body = conn.send(get(origin, "/leg3", f"{scheme} {b64(context.step(challenge))}"))
        assert status == 200, body
        assert conn.send(get(origin, "/later"))[0] == 200  # no header: the connection is authenticated
        assert [s.path.rsplit("/", 1)[-1] for s in origin.seen[-2:]] == ["leg3", "later"]
        assert all("proxy-authorization" not in s.headers for s in origin.seen[-2:])
    finally:
        conn.close()
    fresh = RawClient(proxy_all.port)
    try:
        status, headers, _ = fresh.send(get(origin, "/fresh"))
        assert status == 407  # a new connection must authenticate again
        assert [v for k, v in headers if k == "Proxy-Authenticate"][:2] == ["Negotiate", "NTLM"]
    finally:
        fresh.close()


def test_pyspnego_client_connect_then_tunnel(proxy, tls_origin):
    import ssl

    context = spnego.client("bob", "hunter2", hostname="proxy", service="HTTP", protocol="ntlm")
    conn = RawClient(proxy.port)
    try:
        status, headers, _ = conn.send(connect(tls_origin.port, f"NTLM {b64(context.step())}"))
        assert status == 407  # mitmproxy keeps the connection after a CONNECT 407
        status, _, _ = conn.send(connect(tls_origin.port, f"NTLM {b64(context.step(token_in(headers, 'NTLM')))}"))
        assert status == 200
        tls = ssl.create_default_context(cafile=proxy.ca_file).wrap_socket(conn.sock, server_hostname="127.0.0.1")
        tls.sendall(f"GET /in-tunnel HTTP/1.1\r\nHost: 127.0.0.1:{tls_origin.port}\r\n\r\n".encode())
        assert read_response(tls.makefile("rb")).startswith(b"HTTP/1.1 200")
        assert tls_origin.seen[-1].path == "/in-tunnel"
        tls.close()
    finally:
        conn.close()


def test_handshake_broken_by_a_closed_connection_restarts(proxy, origin):
    context = spnego.client("bob", "hunter2", hostname="proxy", service="HTTP", protocol="ntlm")
    first = RawClient(proxy.port)
    _, headers, _ = first.send(get(origin, "/broken", f"NTLM {b64(context.step())}"))
    type3 = b64(context.step(token_in(headers, "NTLM")))
    first.close()  # like .NET closing after the first 407 (dotnet/corefx#30327)
    second = RawClient(proxy.port)
    try:
        status, headers, body = second.send(get(origin, "/broken", f"NTLM {type3}"))
        assert status == 407 and b"without a pending type 1 on this connection" in body
        assert [v for k, v in headers if k == "Proxy-Authenticate"] == ["NTLM"]  # a full challenge: start over
        retry = spnego.client("bob", "hunter2", hostname="proxy", service="HTTP", protocol="ntlm")
        _, headers, _ = second.send(get(origin, "/broken", f"NTLM {b64(retry.step())}"))
        status, _, _ = second.send(get(origin, "/broken", f"NTLM {b64(retry.step(token_in(headers, 'NTLM')))}"))
        assert status == 200
    finally:
        second.close()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("NTLM", "empty NTLM token"),
        ("NTLM ####", "NTLM token is not valid base64"),
        ("NTLM " + b64(b"NTLMSSP\x00\x03\x00\x00\x00"), "NTLM type 3 message without a pending type 1"),
        ("Negotiate YII=", "Negotiate token is neither SPNEGO nor NTLM (Kerberos is not supported)"),
    ],
)
def test_garbage_tokens_get_407_not_500(proxy_all, origin, value, reason):
    conn = RawClient(proxy_all.port)
    try:
        status, headers, body = conn.send(get(origin, "/garbage", value))
        assert status == 407 and reason.encode() in body
        assert [v for k, v in headers if k == "Proxy-Authenticate"][:2] == ["Negotiate", "NTLM"]
        assert conn.send(get(origin, "/garbage"))[0] == 407  # the connection survived
    finally:
        conn.close()


def test_post_body_on_the_type1_leg_keeps_the_connection(proxy, origin):
    """A client that sends its body with every leg: the 407 must not desynchronise the connection."""
    context = spnego.client("bob", "hunter2", hostname="proxy", service="HTTP", protocol="ntlm")
    conn = RawClient(proxy.port)
    body = "x=12345"

    def post(auth: str) -> str:
        target = origin.url("/post")
        return (
            f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\nProxy-Authorization: {auth}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        )

    try:
        conn.sock.sendall(post(f"NTLM {b64(context.step())}").encode())
        top, _, _ = read_response(conn.file).partition(b"\r\n\r\n")
        assert top.startswith(b"HTTP/1.1 407")
        headers = [tuple(line.split(": ", 1)) for line in top.decode().split("\r\n")[1:]]
        conn.sock.sendall(post(f"NTLM {b64(context.step(token_in(headers, 'NTLM')))}").encode())
        assert read_response(conn.file).split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK"
        assert origin.seen[-1].path.endswith("/post") and origin.seen[-1].method == "POST"
    finally:
        conn.close()


def test_new_credentials_on_an_authenticated_connection_start_over(proxy, origin):
    """A second Type 1 on an authenticated connection restarts the handshake; nothing leaks to the origin."""
    conn = RawClient(proxy.port)
    try:
        for _ in range(2):
            context = spnego.client("bob", "hunter2", hostname="proxy", service="HTTP", protocol="ntlm")
            status, headers, _ = conn.send(get(origin, "/again", f"NTLM {b64(context.step())}"))
            assert status == 407
            status, _, _ = conn.send(get(origin, "/again", f"NTLM {b64(context.step(token_in(headers, 'NTLM')))}"))
            assert status == 200
        assert conn.send(get(origin, "/again", "NTLM ####"))[0] == 407
        assert conn.send(get(origin, "/again"))[0] == 407  # the failed restart left it unauthenticated
        assert all("proxy-authorization" not in s.headers for s in origin.seen if s.path.endswith("/again"))
    finally:
        conn.close()


def test_connect_after_ntlm_on_plain_http_passes_without_headers(proxy, origin, tls_origin):
    import ssl

    context = spnego.client("bob", "hunter2", hostname="proxy", service="HTTP", protocol="ntlm")
    conn = RawClient(proxy.port)
    try:
        _, headers, _ = conn.send(get(origin, "/before-connect", f"NTLM {b64(context.step())}"))
        type3 = f"NTLM {b64(context.step(token_in(headers, 'NTLM')))}"
        assert conn.send(get(origin, "/before-connect", type3))[0] == 200
        port = tls_origin.port
        assert conn.send(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n")[0] == 200
        tls = ssl.create_default_context(cafile=proxy.ca_file).wrap_socket(conn.sock, server_hostname="127.0.0.1")
        tls.sendall(f"GET /after-connect HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert read_response(tls.makefile("rb")).startswith(b"HTTP/1.1 200")
        tls.close()
    finally:
        conn.close()


def test_no_token_or_password_in_the_logs(proxy, proxy_all):
    """Runs last in this module: every handshake above went through these two proxies."""
    for dump in (proxy, proxy_all):
        log = dump.log
        assert "-> 407: continue" in log
        for secret in ("TlRMTVNTUA", "YEgG", "oYG", "Negotiate Y", "NTLM T"):  # NTLMSSP / SPNEGO in base64
            assert secret not in log
