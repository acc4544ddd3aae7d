"""SOCKS5 username/password (RFC 1929): real mitmdump in ``--mode socks5``, real clients, a local origin.

curl (``--socks5``, ``--socks5-hostname``), requests through PySocks and httpx
through socksio authenticate against the scenario's users; rules refuse
destinations; faults act on the handshake; the hop log has a line per
handshake; no password ever lands in a flow. Upstream reports:
microsoft/playwright#10567, Homebrew/brew#4629, mitmproxy/mitmproxy#738.
"""

from __future__ import annotations

import socket
import struct
import textwrap

import httpx
import pytest
import requests

from hoplogcheck import read_hop_log
from procs import MITMDUMP, PROXYAUTH, curl, register_secret, run

pytestmark = pytest.mark.e2e

DEMO = "mitm407"  # the shipped scenario's public demo password
ALICE = register_secret("alice", "s0cks:pa@ss")


def socks_args(dump, hostname: bool = True, user: str | None = None) -> list[str]:
    args = ["--socks5-hostname" if hostname else "--socks5", f"127.0.0.1:{dump.port}"]
    return args + (["--proxy-user", user] if user else [])


def write_scenario(tmp_path, body: str) -> str:
    path = tmp_path / "socks.yaml"
    path.write_text("version: 1\nname: socks-test\n" + textwrap.dedent(body), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def socks(module_mitmdump, tmp_path_factory):
    """The shipped scenario, eager connections (mitmproxy's default: a denied destination fails the SOCKS CONNECT)."""
    hoplog = tmp_path_factory.mktemp("socks-hoplog") / "hop.jsonl"
    dump = module_mitmdump(
        options={"scenario": "socks5", "connection_strategy": "eager", "hoplog": str(hoplog)},
        extra=["--mode", "socks5"],
    )
    dump.hoplog = hoplog
    return dump


def test_curl_right_password_passes_both_address_forms(socks, origin):
    by_address = curl(*socks_args(socks, False, f"demo:{DEMO}"), origin.url("/socks-ip"))
    by_name = curl(*socks_args(socks, True, f"demo:{DEMO}"), f"http://localhost:{origin.port}/socks-name")
    assert by_address.stdout.endswith("200"), by_address.stderr
    assert by_name.stdout.endswith("200"), by_name.stderr


def test_https_inside_an_authenticated_socks_connection(socks, tls_origin):
    """mitmproxy intercepts the TLS inside (its CA); the requests ride on the SOCKS authentication."""
    result = curl(*socks_args(socks, True, f"demo:{DEMO}"), "--cacert", socks.ca_file, "-k",
                  tls_origin.url("/socks-tls"))
    assert result.stdout.endswith("200"), result.stderr


def test_curl_wrong_password_is_rejected_by_the_socks_server(socks, origin):
    result = curl(*socks_args(socks, True, "demo:wrong"), origin.url("/socks-wrong"))
    assert result.returncode == 97 and "User was rejected by the SOCKS5 server" in result.stderr, result.stderr
    assert not any(s.path == "/socks-wrong" for s in origin.seen)
    socks.wait_for_log("refused: bad-credentials (wrong password for user 'demo')")


def test_curl_without_credentials_finds_no_acceptable_method(socks, origin):
    result = curl(*socks_args(socks, True), origin.url("/socks-none"))
    assert result.returncode == 97 and "No authentication method was acceptable" in result.stderr, result.stderr


def test_authorization_inside_the_tunnel_is_the_origins_business(socks, origin):
    """Never challenged, never stripped: SOCKS has no 407, and this header is for the origin."""
    result = curl(*socks_args(socks, True, f"demo:{DEMO}"), "-H", "Authorization: Bearer origin-token",
                  origin.url("/socks-origin-auth"))
    assert result.stdout.endswith("200"), result.stderr
    seen = [s for s in origin.seen if s.path == "/socks-origin-auth"][-1]
    assert seen.headers.get("authorization") == "Bearer origin-token"


def test_a_denied_destination_fails_the_socks_connect(socks, origin):
    """Rule 'no-smtp' (port 25): mitmproxy answers the SOCKS CONNECT with 0x04; nothing is connected."""
    result = curl(*socks_args(socks, False, f"demo:{DEMO}"), "http://127.0.0.1:25/")
    assert result.returncode == 97 and "Can't complete SOCKS5 connection" in result.stderr, result.stderr
    socks.wait_for_log("SOCKS5 CONNECT 127.0.0.1:25 -> refused (denied by rule 1 'no-smtp'")


def test_requests_through_pysocks(socks, origin):
    good = requests.get(origin.url("/pysocks"), timeout=10,
                        proxies={"http": f"socks5h://demo:{DEMO}@127.0.0.1:{socks.port}"})
    assert good.status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError, match="SOCKS5 authentication failed"):
        requests.get(origin.url("/pysocks-wrong"), timeout=10,
                     proxies={"http": f"socks5h://demo:wrong@127.0.0.1:{socks.port}"})


def test_httpx_through_socksio(socks, origin):
    with httpx.Client(proxy=f"socks5://demo:{DEMO}@127.0.0.1:{socks.port}", timeout=10) as client:
        assert client.get(origin.url("/httpx-socks")).status_code == 200
    with (
        httpx.Client(proxy=f"socks5://demo:wrong@127.0.0.1:{socks.port}", timeout=10) as client,
        pytest.raises(httpx.ProxyError),
    ):
        client.get(origin.url("/httpx-socks-wrong"))


def test_hop_log_has_a_socks5_line_per_handshake(socks, origin):
    curl(*socks_args(socks, True, f"demo:{DEMO}"), origin.url("/hop-ok"))
    curl(*socks_args(socks, True, "demo:hop-wrong"), origin.url("/hop-wrong"))
    socks.wait_for_log("refused: bad-credentials")
    records = read_hop_log(socks.hoplog)  # every line validates against schema.json
    handshakes = [r for r in records if r["method"] == "SOCKS5"]
    assert {r["auth"]["result"] for r in handshakes} >= {"ok", "bad-credentials"}
    assert all(r["auth"]["scheme"] == "socks5" for r in handshakes)
    inside = [r for r in records if r["path"] == "/hop-ok"]
    assert inside and inside[0]["auth"]["scheme"] == "socks5" and inside[0]["status"] == 200
    assert "hop-wrong" not in socks.hoplog.read_text()  # no flow, and never the password


def test_hop_log_has_a_line_for_a_refused_socks_connect(socks):
    assert curl(*socks_args(socks, True, f"demo:{DEMO}"), "http://mail.blocked.test:8025/").returncode == 97
    socks.wait_for_log("SOCKS5 CONNECT mail.blocked.test:8025 -> refused")
    refused = [r for r in read_hop_log(socks.hoplog) if r["method"] == "CONNECT" and r["host"] == "mail.blocked.test"]
    assert refused and refused[0]["port"] == 8025 and "'blocked'" in refused[0]["rule"]
    assert refused[0]["auth"]["result"] == "denied" and refused[0]["error"]["type"] == "http_request_denied"


def test_no_password_in_saved_flows(mitmdump_factory, origin, tmp_path):
    """mitmproxy's built-in ProxyAuth keeps SOCKS passwords in flow.metadata["proxyauth"]: it is made inert."""
    from mitmproxy import io

    flows = tmp_path / "flows.mitm"
    path = write_scenario(tmp_path, 'users: {alice: "s0cks:pa@ss"}\n')
    dump = mitmdump_factory(options={"scenario": path, "save_stream_file": str(flows)}, extra=["--mode", "socks5"])
    assert curl(*socks_args(dump, True, f"alice:{ALICE}"), origin.url("/saved-flow")).stdout.endswith("200")
    dump.stop()  # the flow file is complete once mitmdump exits
    with open(flows, "rb") as f:
        saved = [flow for flow in io.FlowReader(f).stream() if flow.request.path == "/saved-flow"]
    assert saved
    for flow in saved:
        assert "proxyauth" not in flow.metadata
        assert ALICE not in repr(flow.metadata)


def test_deny_rule_inside_a_lazy_connection_is_a_403(mitmdump_factory, origin, tmp_path):
    """connection_strategy=lazy: mitmproxy accepts the SOCKS CONNECT first; the request is answered 403."""
    path = write_scenario(tmp_path, """
        users: {alice: "s0cks:pa@ss"}
        rules:
          - {name: no-localhost, match: {host: localhost}, auth: deny}
        default: required
    """)
    dump = mitmdump_factory(options={"scenario": path}, extra=["--mode", "socks5"])
    denied = curl(*socks_args(dump, True, f"alice:{ALICE}"), f"http://localhost:{origin.port}/lazy-denied")
    allowed = curl(*socks_args(dump, True, f"alice:{ALICE}"), origin.url("/lazy-allowed"))
    assert denied.stdout.endswith("403"), denied.stderr
    assert allowed.stdout.endswith("200"), allowed.stderr
    assert not any(s.path == "/lazy-denied" for s in origin.seen)


def test_faults_lockout_and_rotation_act_on_the_handshake(mitmdump_factory, origin, tmp_path):
    path = write_scenario(tmp_path, """
        users: {alice: "s0cks:pa@ss", svc: unused}
        faults:
          - lockout: {failures: 2, seconds: 300, status: 403}
          - rotate: {user: svc, passwords: [rot-1, rot-2], requests: 1, cycle: false}
    """)
    register_secret("svc", "rot-1")
    register_secret("svc", "rot-2")
    dump = mitmdump_factory(options={"scenario": path}, extra=["--mode", "socks5"])
    for _ in range(2):
        assert curl(*socks_args(dump, True, "alice:nope"), origin.url("/lock")).returncode == 97
    locked = curl(*socks_args(dump, True, f"alice:{ALICE}"), origin.url("/locked"))
    assert locked.returncode == 97 and "User was rejected" in locked.stderr, locked.stderr
    dump.wait_for_log("is locked out for")
    first = curl(*socks_args(dump, True, "svc:rot-1"), origin.url("/rotation-first"))
    old = curl(*socks_args(dump, True, "svc:rot-1"), origin.url("/rotation-old"))
    new = curl(*socks_args(dump, True, "svc:rot-2"), origin.url("/rotation-new"))
    assert first.stdout.endswith("200") and old.returncode == 97 and new.stdout.endswith("200"), (
        first.stderr, old.stderr, new.stderr)


def test_bcrypt_htpasswd_user(mitmdump_factory, origin, tmp_path):
    bcrypt = pytest.importorskip("bcrypt")
    password = register_secret("bob", "bcrypt-socks")
    (tmp_path / "users.htpasswd").write_text(
        "bob:" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode() + "\n", encoding="utf-8")
    path = write_scenario(tmp_path, "htpasswd: users.htpasswd\n")
    dump = mitmdump_factory(options={"scenario": path}, extra=["--mode", "socks5"])
    assert curl(*socks_args(dump, True, f"bob:{password}"), origin.url("/bcrypt")).stdout.endswith("200")
    assert curl(*socks_args(dump, True, "bob:wrong"), origin.url("/bcrypt-wrong")).returncode == 97


def greet(port: int, methods: bytes) -> bytes:
    """A raw SOCKS5 greeting offering ``methods``; the server's two-byte choice."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack("BB", 5, len(methods)) + methods)
        return sock.recv(2)


def test_auth_none_offers_no_password_method(mitmdump_factory, origin, tmp_path):
    """``socks5: {auth: none}``: an open SOCKS server; a client offering only user/password gets 0xFF."""
    path = write_scenario(tmp_path, """
        users: {alice: "s0cks:pa@ss"}
        socks5: {auth: none}
        rules:
          - {name: no-smtp, match: {port: 25}, auth: deny}
    """)
    dump = mitmdump_factory(options={"scenario": path, "connection_strategy": "eager"}, extra=["--mode", "socks5"])
    assert greet(dump.port, b"\x02") == b"\x05\xff"
    assert greet(dump.port, b"\x00\x02") == b"\x05\x00"
    assert curl(*socks_args(dump, True), origin.url("/open")).stdout.endswith("200")
    assert curl(*socks_args(dump, False), "http://127.0.0.1:25/").returncode == 97  # the rules still apply


def test_required_offers_only_the_password_method(socks):
    assert greet(socks.port, b"\x00") == b"\x05\xff"
    assert greet(socks.port, b"\x00\x02") == b"\x05\x02"


def test_a_real_proxyauth_setting_still_clashes(confdir):
    result = run([MITMDUMP, "--mode", "socks5", "-p", "0", "-s", PROXYAUTH, "--set", "proxyauth=a:b",
                  "--set", f"confdir={confdir}"])
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "built-in proxyauth option are both active" in output
    assert "Traceback" not in output


def test_control_api_lock_and_expire_reach_socks5(mitmdump_factory, origin, tmp_path):
    """Locked: the handshake is refused. Expired: an open SOCKS connection is closed (no 407 in SOCKS)."""
    from procs import free_port
    from test_e2e_control import api

    path = write_scenario(tmp_path, 'users: {alice: "s0cks:pa@ss"}\n')
    port = free_port()
    dump = mitmdump_factory(options={"scenario": path, "control_port": str(port)}, extra=["--mode", "socks5"])
    dump.wait_for_log("control API on")
    proxies = {"http": f"socks5h://alice:{ALICE}@127.0.0.1:{dump.port}"}
    with requests.Session() as session:
        assert session.get(origin.url("/ctl-1"), proxies=proxies, timeout=10).status_code == 200
        assert api(port, "POST", "/expire")[0] == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(origin.url("/ctl-2"), proxies=proxies, timeout=10)  # the open connection is closed
    dump.wait_for_log("is no longer authenticated; closed")
    assert not any(s.path == "/ctl-2" for s in origin.seen)
    assert api(port, "POST", "/lock?user=alice")[0] == 200
    locked = curl(*socks_args(dump, True, f"alice:{ALICE}"), origin.url("/ctl-locked"))
    assert locked.returncode == 97, locked.stderr
    dump.wait_for_log("is locked (control API)")
