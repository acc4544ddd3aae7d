"""End to end: a real mitmdump serves the PAC file; real PAC evaluators (pypac, headless Chromium) follow it.

The PAC is fetched directly (no proxy) with curl and requests: no credentials,
the right content type, the body the generator makes. pypac's PACSession is
a real client that reads the PAC and then sends requests DIRECT or through
the proxy; Chromium's ``--proxy-pac-url`` is checked through the origin's
seen requests and the hop log.
"""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest
import requests

from hoplogcheck import read_hop_log, wait_for_record
from mitm407.scenario.load import load_scenario
from mitm407.scenario.pac import pac_script
from procs import CHROMIUM, REPO, Origin, chromium, curl

pypac = pytest.importorskip("pypac", reason="pypac is a test dependency (pip install -e '.[test]')")
from pypac.parser import PACFile  # noqa: E402

pytestmark = pytest.mark.e2e

SHIPPED = REPO / "scenarios" / "pac-bypass.yaml"
CONTENT_TYPE = "application/x-ns-proxy-autoconfig"


def fetch(url: str, **kwargs) -> requests.Response:
    """A direct GET: no proxy from the environment."""
    session = requests.Session()
    session.trust_env = False
    return session.get(url, timeout=10, **kwargs)


def status_of(result) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1])


def write(tmp: Path, name: str, body: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text("version: 1\nusers: {demo: mitm407}\n" + textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shipped(module_mitmdump, tmp_path_factory):
    hoplog = tmp_path_factory.mktemp("pac-hoplog") / "hops.jsonl"
    proxy = module_mitmdump(options={"scenario": str(SHIPPED), "hoplog": str(hoplog)})
    proxy.hoplog = hoplog
    return proxy


@pytest.mark.parametrize("path", ["/proxy.pac", "/wpad.dat", "/proxy.pac?v=2"])
def test_pac_is_served_without_credentials(shipped, path: str):
    result = curl("--noproxy", "*", "-D", "-", f"http://127.0.0.1:{shipped.port}{path}")
    assert status_of(result) == 200
    head, _, body = result.stdout.rsplit("\n", 1)[0].partition("\n\n")  # text mode: CRLF read as LF
    assert f"content-type: {CONTENT_TYPE}" in head.lower()
    scenario = load_scenario(SHIPPED)
    assert body == pac_script(scenario.rules, f"PROXY 127.0.0.1:{shipped.port}", "pac-bypass")


def test_pac_names_the_address_the_client_used(shipped):
    body = fetch(f"http://localhost:{shipped.port}/proxy.pac").text
    assert f'return "PROXY localhost:{shipped.port}";' in body


def test_pypac_evaluates_the_served_pac(shipped):
    pac = pypac.get_pac(url=f"http://127.0.0.1:{shipped.port}/proxy.pac")  # checks the content type too
    assert pac is not None
    proxy = f"PROXY 127.0.0.1:{shipped.port}"
    assert pac.find_proxy_for_url("http://wiki.intranet.test/a", "wiki.intranet.test") == "DIRECT"
    assert pac.find_proxy_for_url("https://intranet.test/", "intranet.test") == "DIRECT"
    assert pac.find_proxy_for_url("http://uploads.intranet.test/", "uploads.intranet.test") == proxy
    assert pac.find_proxy_for_url("https://example.com/", "example.com") == proxy


def test_other_requests_to_the_proxy_itself_get_the_usual_treatment(shipped, origin):
    assert status_of(curl("--noproxy", "*", f"http://127.0.0.1:{shipped.port}/other")) == 407
    assert status_of(curl("--noproxy", "*", "-X", "POST", f"http://127.0.0.1:{shipped.port}/proxy.pac")) == 407
    # a PAC path on another host, through the proxy: an ordinary request (407, the origin sees nothing)
    seen = len(origin.seen)
    assert status_of(curl("-x", shipped.url, origin.url("/proxy.pac"))) == 407
    assert len(origin.seen) == seen


def test_hop_log_records_the_pac_as_answered_here(shipped):
    fetch(f"http://127.0.0.1:{shipped.port}/wpad.dat?hop")
    record = wait_for_record(shipped.hoplog, lambda r: r["path"] == "/wpad.dat?hop")
    assert record["status"] == 200
    assert record["answered_by"]["kind"] == "this-proxy"
    assert record["auth"] is None and record["faults"] == []


def test_pypac_session_goes_direct_or_through_the_proxy(module_mitmdump, tmp_path, origin):
    """A real PAC client: ``localhost`` is bypassed (DIRECT), ``127.0.0.1`` goes through the 407 proxy."""
    path = write(tmp_path, "pac-local", """\
        rules:
          - {match: {host: localhost}, auth: none}
        """)
    proxy = module_mitmdump(options={"scenario": str(path)})
    pac = pypac.get_pac(url=f"http://127.0.0.1:{proxy.port}/proxy.pac")
    session = pypac.PACSession(pac=pac, proxy_auth=requests.auth.HTTPProxyAuth("demo", "mitm407"))
    session.trust_env = False
    direct = session.get(f"http://localhost:{origin.port}/pac-direct", timeout=10)
    proxied = session.get(origin.url("/pac-proxied"), timeout=10)
    assert direct.status_code == proxied.status_code == 200
    seen = {s.path: s.headers for s in origin.seen}
    assert "mitm407" not in seen["/pac-direct"].get("via", "")
    assert "mitm407" in seen["/pac-proxied"].get("via", "")
    assert "proxy-authorization" not in seen["/pac-proxied"]


def test_pac_text_is_served_verbatim(module_mitmdump, tmp_path):
    text = 'function FindProxyForURL(url, host) {\n  return "PROXY 192.0.2.1:3128; DIRECT";\n}\n'
    path = tmp_path / "pac-text.yaml"
    path.write_text("version: 1\nusers: {demo: x}\npac:\n  text: |\n" + textwrap.indent(text, "    "), "utf-8")
    proxy = module_mitmdump(options={"scenario": str(path)})
    response = fetch(f"http://127.0.0.1:{proxy.port}/proxy.pac")
    assert response.status_code == 200 and response.headers["content-type"] == CONTENT_TYPE
    assert response.text == text


def test_fault_unreachable(module_mitmdump, tmp_path):
    hoplog = tmp_path / "hops.jsonl"
    not_found = module_mitmdump(options={
        "scenario": str(write(tmp_path, "pac-404", "pac: {fault: unreachable}\n")), "hoplog": str(hoplog)
    })
    closed = module_mitmdump(options={
        "scenario": str(write(tmp_path, "pac-close", "pac: {fault: {unreachable: {close: true}}}\n"))
    })
    assert status_of(curl("--noproxy", "*", f"http://127.0.0.1:{not_found.port}/proxy.pac")) == 404
    assert pypac.get_pac(url=f"http://127.0.0.1:{not_found.port}/proxy.pac") is None
    record = wait_for_record(hoplog, lambda r: r["path"] == "/proxy.pac")
    assert record["faults"] == [{"name": "pac unreachable", "reason": "the PAC file is unreachable (404)"}]
    assert record["answered_by"]["kind"] == "this-proxy"
    result = curl("--noproxy", "*", f"http://127.0.0.1:{closed.port}/wpad.dat")
    assert result.returncode == 52, result.stderr  # curl: empty reply from server
    # the proxy itself still works
    assert status_of(curl("-x", closed.url, "http://192.0.2.1/")) == 407


def refused(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


def test_fault_dead_proxy(module_mitmdump, tmp_path):
    dead = module_mitmdump(options={"scenario": str(write(tmp_path, "pac-dead", """\
        rules: [{match: {host: "*.intranet.test"}, auth: none}]
        pac: {fault: dead_proxy}
        """))})
    fallback = module_mitmdump(options={"scenario": str(write(tmp_path, "pac-fallback", """\
        pac: {fault: {dead_proxy: {proxy: "127.0.0.1:9", fallback: true}}}
        """))})
    pac = PACFile(fetch(f"http://127.0.0.1:{dead.port}/proxy.pac").text)
    assert pac.find_proxy_for_url("http://a.intranet.test/", "a.intranet.test") == "DIRECT"
    named = pac.find_proxy_for_url("http://example.com/", "example.com")
    assert named.startswith("PROXY 127.0.0.1:") and named != f"PROXY 127.0.0.1:{dead.port}"
    assert refused(named.removeprefix("PROXY "))
    assert PACFile(fetch(f"http://127.0.0.1:{dead.port}/wpad.dat").text).find_proxy_for_url(
        "http://example.com/", "example.com") == named  # the same dead port every time
    pac = PACFile(fetch(f"http://127.0.0.1:{fallback.port}/proxy.pac").text)
    assert pac.find_proxy_for_url("http://example.com/", "example.com") == (
        f"PROXY 127.0.0.1:9; PROXY 127.0.0.1:{fallback.port}"
    )


# -- Chromium ------------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")


def chromium_via_pac(pac_url: str, url: str, tmp: Path) -> str:
    # *.test resolves to the local origin; loopback names would bypass every proxy implicitly
    return chromium(f"--proxy-pac-url={pac_url}", "--host-resolver-rules=MAP *.test 127.0.0.1",
                    "--dump-dom", url, tmp=tmp)


@needs_chromium
def test_chromium_follows_the_generated_pac(module_mitmdump, tmp_path):
    hoplog = tmp_path / "hops.jsonl"
    proxy = module_mitmdump(options={"scenario": str(SHIPPED), "hoplog": str(hoplog)})
    origin = Origin()
    try:
        pac_url = f"http://127.0.0.1:{proxy.port}/proxy.pac"
        dom = chromium_via_pac(pac_url, f"http://wiki.intranet.test:{origin.port}/direct", tmp_path)
        assert '"origin": "ok"' in dom  # the origin answered Chromium itself
        assert [s.headers["host"] for s in origin.seen if s.path == "/direct"] == [f"wiki.intranet.test:{origin.port}"]
        chromium_via_pac(pac_url, f"http://www.corp.test:{origin.port}/proxied", tmp_path)
        record = wait_for_record(hoplog, lambda r: r["host"] == "www.corp.test")
        assert (record["path"], record["status"]) == ("/proxied", 407)  # through the proxy, which asked
        assert not [s for s in origin.seen if s.path == "/proxied"]
        records = read_hop_log(hoplog)
        assert any(r["path"] == "/proxy.pac" and r["status"] == 200 for r in records)  # fetched without 407
        assert not [r for r in records if r["host"] == "wiki.intranet.test"]  # DIRECT never reached the proxy
    finally:
        origin.close()


@needs_chromium
def test_chromium_falls_back_from_a_dead_proxy(module_mitmdump, tmp_path):
    hoplog = tmp_path / "hops.jsonl"
    scenario = write(tmp_path, "pac-fallback-chromium", "pac: {fault: {dead_proxy: {fallback: true}}}\n")
    proxy = module_mitmdump(options={"scenario": str(scenario), "hoplog": str(hoplog)})
    chromium_via_pac(f"http://127.0.0.1:{proxy.port}/proxy.pac", "http://fallback.test/", tmp_path)
    record = wait_for_record(hoplog, lambda r: r["host"] == "fallback.test")
    assert record["status"] == 407  # Chromium skipped the dead proxy and asked the live one
    pac_record = wait_for_record(hoplog, lambda r: r["path"] == "/proxy.pac")
    assert pac_record["faults"][0]["name"] == "pac dead_proxy"
