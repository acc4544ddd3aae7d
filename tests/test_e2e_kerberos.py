"""End to end: Negotiate/Kerberos through a real mitmdump, a real MIT KDC, curl and a gssapi client.

The realm (``mitm407.teach.realm``, the code behind ``mitm407 kdc``) runs for
the module: alice has a ticket in its credential cache; the proxy accepts with
the realm's HTTP/localhost keytab. The proxy is reached as ``localhost`` (the
service principal's host name), as a real client would.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hoplogcheck import read_hop_log, wait_for_record
from kerberosrealm import ALICE_PW, client_token, need_kerberos, running_realm
from procs import REPO, curl, exchange, mitm407_cli, register_secret, run, stop_process

pytestmark = pytest.mark.e2e
DEMO_PW = register_secret("alice", "wonderland")  # scenarios/negotiate-kerberos.yaml

SCENARIO = """\
version: 1
name: e2e-kerberos
realm: CORP.TEST
users:
  alice: "{alice}"
schemes: [negotiate]
negotiate:
  kerberos:
    keytab: {keytab}
    principal: HTTP/localhost
  mechanisms: [{mechanisms}]
rules:
  - {{name: open, match: {{path: /krb-open}}, auth: none}}
  - {{name: closed, match: {{path: /krb-closed}}, auth: deny}}
"""


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory):
    need_kerberos()
    with running_realm(tmp_path_factory.mktemp("realm")) as running:
        assert running.kinit("alice", ALICE_PW).returncode == 0
        yield running


@pytest.fixture(scope="module")
def proxy(realm, module_mitmdump, logdir: Path, tmp_path_factory: pytest.TempPathFactory):
    scenario = tmp_path_factory.mktemp("kerberos-scenario") / "kerberos.yaml"
    scenario.write_text(SCENARIO.format(alice=ALICE_PW, keytab=realm.keytab, mechanisms="kerberos"), encoding="utf-8")
    hoplog = logdir / "hops-kerberos.jsonl"
    dump = module_mitmdump(options={"scenario": str(scenario), "hoplog": str(hoplog)})
    dump.hoplog = hoplog
    return dump


def localhost(proxy) -> str:
    return f"http://localhost:{proxy.port}"


def status_of(result) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1])


def no_tokens_in_logs(proxy) -> None:
    """SPNEGO tokens start with 'YII' in base64 (ASN.1 0x60 0x82): none may reach a log."""
    assert "Negotiate YII" not in proxy.log
    assert "YII" not in proxy.hoplog.read_text(encoding="utf-8")


# -- curl ----------------------------------------------------------------------------


def test_curl_with_a_ticket_plain_http(realm, proxy, origin):
    result = curl("--proxy-negotiate", "-U", ":", "-x", localhost(proxy), origin.url("/krb-http"), env=realm_env(realm))
    assert status_of(result) == 200, result.stderr
    assert origin.seen[-1].path.endswith("/krb-http")
    assert "proxy-authorization" not in origin.seen[-1].headers
    proxy.wait_for_log("connection authenticated (Kerberos ticket accepted for 'alice@CORP.TEST'")
    record = wait_for_record(proxy.hoplog, lambda r: r["path"].endswith("/krb-http") and r["status"] == 200)
    assert (record["auth"]["scheme"], record["auth"]["user"], record["auth"]["result"]) == (
        "negotiate",
        "alice@CORP.TEST",
        "ok",
    )
    # curl 7.88 sends its token with the first request (--proxy-negotiate picks one scheme): no 407 first
    assert [r["status"] for r in read_hop_log(proxy.hoplog) if r["path"].endswith("/krb-http")] == [200]
    no_tokens_in_logs(proxy)


def test_html_report_draws_the_negotiate_exchange_without_tokens(realm, proxy, origin, tmp_path):
    """curl --proxy-anyauth: 407 (Negotiate only) -> token -> 200; the report names the scheme and alice's principal."""
    url = origin.url("/krb-report")
    result = curl("-v", "--proxy-anyauth", "-U", ":", "-x", localhost(proxy), url, env=realm_env(realm))
    assert status_of(result) == 200, result.stderr
    sent = [line.split("Negotiate ", 1)[1] for line in result.stderr.splitlines()
            if line.startswith("> Proxy-Authorization: Negotiate ")]
    assert sent  # the token curl sent, which the report must not contain
    wait_for_record(proxy.hoplog, lambda r: r["path"].endswith("/krb-report") and r["status"] == 200)
    out = tmp_path / "report.html"
    done = mitm407_cli("report", "--html", str(proxy.hoplog), "-o", str(out))
    assert done.returncode == 0, done.stderr
    page = out.read_text(encoding="utf-8")
    flows = [section for section in page.split('<section class="flow')[1:] if "/krb-report</span>" in section]
    assert [re.search(r'data-status="(\d+)"', f).group(1) for f in flows] == ["407", "200"]
    challenged, accepted = flows
    # the 407: no credentials yet, refused by this proxy; then one connection, the token, alice forwarded
    assert ">no Proxy-Authorization</text>" in challenged and "auth missing" in challenged
    client_lane = re.compile(r'data-lane="client".*?<text class="lane-kind"[^>]*>([^<]+)</text>')
    assert client_lane.search(challenged).group(1) == client_lane.search(accepted).group(1)  # one connection
    assert ">Proxy-Authorization: Negotiate ‹alice@CORP.TEST›</text>" in accepted
    assert ">auth ok ‹alice@CORP.TEST›: Kerberos ticket accepted…</text>" in accepted
    assert "with mutual authentication; connection authenticated" in accepted  # the arrow's tooltip
    for token in sent:
        assert token[-40:] not in page
    assert "YII" not in page  # no SPNEGO token at all


def test_curl_with_a_ticket_through_connect(realm, proxy, tls_origin):
    url = tls_origin.url("/krb-tls")
    result = curl(
        "--cacert", proxy.ca_file, "--proxy-negotiate", "-U", ":", "-x", localhost(proxy), url, env=realm_env(realm)
    )
    assert status_of(result) == 200, result.stderr
    assert tls_origin.seen[-1].path.endswith("/krb-tls")
    no_tokens_in_logs(proxy)


def test_curl_without_a_ticket_gets_407_negotiate_only(realm, proxy, origin, tmp_path):
    env = {**realm_env(realm), "KRB5CCNAME": f"FILE:{tmp_path / 'empty-ccache'}"}
    result = curl("-v", "--proxy-negotiate", "-U", ":", "-x", localhost(proxy), origin.url("/krb-none"), env=env)
    assert status_of(result) == 407
    offered = [line for line in result.stderr.splitlines() if line.lower().startswith("< proxy-authenticate")]
    assert offered and all(line.split(":", 1)[1].strip() == "Negotiate" for line in offered)  # no NTLM fallback


def test_curl_by_ip_asks_for_a_service_the_kdc_does_not_know(realm, proxy, origin):
    """Wrong SPN: reached as 127.0.0.1, curl wants HTTP/127.0.0.1, gets no ticket and stops at the 407."""
    result = curl("--proxy-negotiate", "-U", ":", "-x", proxy.url, origin.url("/krb-ip"), env=realm_env(realm))
    assert status_of(result) == 407


def test_rules_apply_as_for_every_scheme(realm, proxy, origin, tmp_path):
    no_ticket = {**realm_env(realm), "KRB5CCNAME": f"FILE:{tmp_path / 'empty-ccache'}"}
    negotiate = ("--proxy-negotiate", "-U", ":", "-x", localhost(proxy))
    assert status_of(curl(*negotiate, origin.url("/krb-open"), env=no_ticket)) == 200  # auth: none
    assert status_of(curl(*negotiate, origin.url("/krb-closed"), env=realm_env(realm))) == 403  # auth: deny


def realm_env(realm) -> dict[str, str]:
    return {**os.environ, **realm.env}


def test_git_with_proxy_auth_method_negotiate(realm, proxy, origin):
    """git (libcurl) with http.proxyAuthMethod=negotiate: its first request carries alice's ticket."""
    # the empty user name (":@") makes git hand libcurl proxy credentials, so it authenticates at all
    proxy_url = localhost(proxy).replace("http://", "http://:@")
    git = ["git", "-c", f"http.proxy={proxy_url}", "-c", "http.proxyAuthMethod=negotiate"]
    env = {**realm_env(realm), "GIT_TERMINAL_PROMPT": "0"}
    result = run([*git, "ls-remote", origin.url("/krb-git/repo.git")], env=env)
    assert "/krb-git/repo.git/info/refs" in " ".join(seen.path for seen in origin.seen), result.stderr
    assert "proxy-authorization" not in origin.seen[-1].headers


# -- a Python client: gssapi makes the token --------------------------------------------


def raw_get(port: int, url: str, token: str | None) -> tuple[int, dict[str, str]]:
    """One GET through the proxy on a new connection: (status, lower-case headers)."""
    header = f"Proxy-Authorization: Negotiate {token}\r\n" if token else ""
    raw = exchange(port, f"GET {url} HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
    return int(head[0].split()[1]), headers


def test_python_client_spnego_with_mutual_authentication(realm, proxy, origin):
    token, context = client_token()
    status, headers = raw_get(proxy.port, origin.url("/krb-python"), token)
    assert status == 200
    scheme, _, reply = headers["proxy-authenticate"].partition(" ")
    assert scheme == "Negotiate"
    context.step(base64.b64decode(reply))  # the AP-REP proves the proxy holds the service key
    assert context.complete
    proxy.wait_for_log("Kerberos ticket accepted for 'alice@CORP.TEST' with mutual authentication")


def test_python_client_raw_kerberos_token(realm, proxy, origin):
    token, _ = client_token(spnego=False, mutual=False)
    status, headers = raw_get(proxy.port, origin.url("/krb-raw"), token)
    assert status == 200
    assert "proxy-authenticate" not in headers  # no mutual authentication asked, none sent


def test_replayed_token_is_refused(realm, proxy, origin):
    token, _ = client_token()
    assert raw_get(proxy.port, origin.url("/krb-first"), token)[0] == 200
    status, headers = raw_get(proxy.port, origin.url("/krb-replay"), token)
    assert status == 407
    assert headers["proxy-authenticate"] == "Negotiate"
    proxy.wait_for_log("bad-credentials (replayed Kerberos token")


def test_ticket_for_another_service_is_refused(realm, proxy, origin):
    """The client got a ticket for HTTP/other (the KDC knows it), but the proxy has no key for it."""
    token, _ = client_token(service="HTTP@other")
    status, _ = raw_get(proxy.port, origin.url("/krb-other"), token)
    assert status == 407
    proxy.wait_for_log("/krb-other -> 407: bad-credentials (Kerberos token refused: Request ticket server HTTP/other@")


def test_garbage_token_is_malformed(realm, proxy, origin):
    status, _ = raw_get(proxy.port, origin.url("/krb-garbage"), base64.b64encode(b"\x60\x03\x06\x01\x00").decode())
    assert status == 407
    proxy.wait_for_log("malformed (Negotiate token is neither SPNEGO, Kerberos nor NTLM)")


# -- `mitm407 kdc` and the shipped scenario (what `make demo-kerberos` runs) ----------------


def test_kdc_command_serves_the_shipped_scenario_and_stops_on_ctrl_c(mitmdump_factory, origin, logdir, tmp_path):
    need_kerberos()
    directory = tmp_path / "krb"
    out = logdir / "mitm407-kdc.out"
    with out.open("wb") as f:
        kdc = subprocess.Popen(
            [sys.executable, "-m", "mitm407", "kdc", "--scenario", "negotiate-kerberos", "--dir", str(directory)],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO / "addons")},
            start_new_session=True,
        )
    try:
        wait_for_text(out, "Ctrl-C stops the KDC.", kdc)
        env = dict(line.removeprefix("export ").split("=", 1) for line in (directory / "env").read_text().splitlines())
        kinit = subprocess.run(
            ["kinit", "alice@CORP.TEST"], input=f"{DEMO_PW}\n", env={**os.environ, **env}, capture_output=True,
            text=True, timeout=30, check=False,
        )
        assert kinit.returncode == 0, kinit.stderr
        proxy = mitmdump_factory(options={"scenario": "negotiate-kerberos"})
        url = f"http://localhost:{proxy.port}"
        result = curl("--proxy-negotiate", "-U", ":", "-x", url, origin.url("/krb-demo"), env={**os.environ, **env})
        assert status_of(result) == 200, result.stderr
        proxy.wait_for_log("Kerberos ticket accepted for 'alice@CORP.TEST'")
        kdc_pid = int((directory / "kdc.pid").read_text())
    finally:
        kdc.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
        try:
            code = kdc.wait(timeout=20)
        finally:
            stop_process(kdc)  # SIGINT then SIGKILL to its group if it is still there (a no-op once it exited)
    assert code == 0
    assert out.read_text().rstrip().endswith("mitm407 kdc: KDC stopped")
    assert not Path(f"/proc/{kdc_pid}").exists() or "zombie" in Path(f"/proc/{kdc_pid}/status").read_text()


def wait_for_text(path: Path, text: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert process.poll() is None, path.read_text(errors="replace")
        assert time.monotonic() < deadline, path.read_text(errors="replace")
        time.sleep(0.1)


# -- what users hit: clock skew, a ticket from another realm ------------------------------------

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def test_clock_skew_beyond_the_window_is_refused(realm, mitmdump_factory, logdir, origin, tmp_path):
    """The proxy's clock 10 minutes ahead (libfaketime): the AP-REQ's authenticator is too old (MIT: 5 minutes)."""
    if not LIBFAKETIME.exists():
        pytest.skip("libfaketime not installed: apt-get install faketime")
    scenario = tmp_path / "kerberos.yaml"
    scenario.write_text(SCENARIO.format(alice=ALICE_PW, keytab=realm.keytab, mechanisms="kerberos"), encoding="utf-8")
    fake = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": "+10m", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    skewed = mitmdump_factory(options={"scenario": str(scenario)}, env=fake, name="mitmdump-skewed")
    url = f"http://localhost:{skewed.port}"
    result = curl("--proxy-negotiate", "-U", ":", "-x", url, origin.url("/krb-skew"), env=realm_env(realm))
    assert status_of(result) == 407
    skewed.wait_for_log("/krb-skew -> 407: bad-credentials (Kerberos token refused: Clock skew too great")


def test_ticket_from_another_realm_is_refused(realm, proxy, origin, tmp_path):
    """OTHER.TEST also has an HTTP/localhost, with its own key: the proxy's keytab has only CORP.TEST's."""
    from mitm407.teach.realm import Realm

    with Realm(tmp_path / "other", {"alice": ALICE_PW}, realm="OTHER.TEST") as other:
        assert other.kinit("alice", ALICE_PW).returncode == 0
        env = {**os.environ, **other.env}
        result = curl("--proxy-negotiate", "-U", ":", "-x", localhost(proxy), origin.url("/krb-realm"), env=env)
    assert status_of(result) == 407
    refused = "/krb-realm -> 407: bad-credentials (Kerberos token refused: Request ticket server HTTP/localhost@OTHER"
    proxy.wait_for_log(refused)


def test_curl_two_requests_on_one_connection(realm, proxy, origin):
    """The second request rides on the authenticated connection (or a fresh token): never a replay refusal."""
    urls = [origin.url("/krb-one"), origin.url("/krb-two")]
    result = curl("-v", "--proxy-negotiate", "-U", ":", "-x", localhost(proxy), *urls, env=realm_env(realm))
    assert result.stdout.count("\n200") == 2, result.stderr
    assert "Re-using existing connection" in result.stderr
    assert [s.path.rsplit("/", 1)[-1] for s in origin.seen[-2:]] == ["krb-one", "krb-two"]


JAVA_CLIENT = """\
import java.net.*;

public class KrbProxy {
    public static void main(String[] args) throws Exception {
        Proxy proxy = new Proxy(Proxy.Type.HTTP, new InetSocketAddress("localhost", Integer.parseInt(args[0])));
        HttpURLConnection c = (HttpURLConnection) new URL(args[1]).openConnection(proxy);
        System.out.println(c.getResponseCode());
    }
}
"""


def test_java_httpurlconnection_with_jgss(realm, proxy, origin, tmp_path):
    """JDK HttpURLConnection answers a 407 Negotiate through JGSS, reading the realm's krb5.conf and ccache."""
    import shutil

    if shutil.which("java") is None:
        pytest.skip("no java on PATH")
    source = tmp_path / "KrbProxy.java"
    source.write_text(JAVA_CLIENT, encoding="utf-8")
    java = ["java", f"-Djava.security.krb5.conf={realm.krb5_conf}", "-Djavax.security.auth.useSubjectCredsOnly=false"]
    result = run([*java, str(source), str(proxy.port), origin.url("/krb-java")], timeout=90, env=realm_env(realm))
    assert result.stdout.strip() == "200", result.stderr[-2000:]
    assert origin.seen[-1].path.endswith("/krb-java")
    proxy.wait_for_log("/krb-java -> 407: missing")  # JDK waits for the 407, then sends its token
