"""End to end: hop logs of real proxy chains (mitm407 -> mitm407, mitm407 -> Squid, hops down).

Every hop-log line the tests read is validated against mitm407/hoplog/schema.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import squid as squid_helper
from hoplogcheck import read_hop_log, wait_for_record
from procs import PROXYAUTH, REPO, curl, free_port, mitm407_cli, register_secret, run, stop_process, wait_for_port

pytestmark = pytest.mark.e2e

ANN_PW = register_secret("ann", "edge-pass:A-7")  # user of the edge hop
BEN_PW = register_secret("ben", "core-pass-B-8")  # user of the core hop
SAM_PW = register_secret("sam", "squid-pass-S-9")  # user of Squid


def scenario(directory: Path, name: str, user: str, password: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            name: {name}
            realm: {name.upper()}
            users:
              {user}: "{password}"
            """
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("hop-scenarios")
    return {"edge": scenario(directory, "edge", "ann", ANN_PW), "core": scenario(directory, "core", "ben", BEN_PW)}


def status_of(result) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1])


def hop(factory, logdir: Path, name: str, scenario_path: Path | None, upstream: str | None = None, **options):
    """A mitm407 hop with its own hop_name and hop log (logdir/hops-NAME-PORT.jsonl)."""
    port = free_port()
    opts = {"hop_name": name, "hoplog": str(logdir / f"hops-{name}-{port}.jsonl"), **options}
    if scenario_path is not None:
        opts["scenario"] = str(scenario_path)
    extra = ["--mode", f"upstream:{upstream}"] if upstream else []
    dump = factory(options=opts, extra=extra, name=name, port=port)
    dump.hoplog = Path(opts["hoplog"])
    return dump


# -- a) client -> edge (ann) -> core (ben) -> origin --------------------------------


@pytest.fixture(scope="module")
def chain_a(module_mitmdump, logdir, scenarios):
    core = hop(module_mitmdump, logdir, "core", scenarios["core"])
    edge = hop(module_mitmdump, logdir, "edge", scenarios["edge"], upstream=core.url)
    edge_auth = hop(module_mitmdump, logdir, "edge-auth", scenarios["edge"], upstream=core.url,
                    upstream_auth=f"ben:{BEN_PW}")
    return core, edge, edge_auth


def test_a_core_407_attributed_to_core_not_edge(chain_a, origin):
    core, edge, _ = chain_a
    result = curl("-i", "-x", edge.url, "--proxy-user", f"ann:{ANN_PW}", origin.url("/a-plain?token=t0p"))
    assert status_of(result) == 407
    assert 'Proxy-Authenticate: Basic realm="CORE"' in result.stdout
    assert "core (mitm407) refused this request: no Proxy-Authorization header" in result.stdout
    # core's member carries the error; edge appended its own, plain one (RFC 9209 order)
    assert 'Proxy-Status: core; error=http_request_denied; details="no Proxy-Authorization header"' in result.stdout
    assert "Proxy-Status: edge\n" in result.stdout
    assert "Via: 1.1 core\n" in result.stdout and "Via: 1.1 edge\n" in result.stdout
    record = wait_for_record(edge.hoplog, lambda r: r["path"].startswith("/a-plain"))
    assert record["answered_by"] == {"kind": "upstream-proxy", "hop": "core"}
    assert record["status"] == 407 and record["path"] == "/a-plain?token=REDACTED"
    assert record["auth"]["result"] == "ok" and record["auth"]["user"] == "ann"
    assert record["error"]["type"] == "http_request_denied"
    assert record["upstream_proxy"] == f"127.0.0.1:{core.port}"
    assert [v["received_by"] for v in record["via"]] == ["core", "edge"]
    assert [p["hop"] for p in record["proxy_status"]] == ["core", "edge"]
    core_record = wait_for_record(core.hoplog, lambda r: r["path"].startswith("/a-plain"))
    assert core_record["answered_by"] == {"kind": "this-proxy", "hop": "core"}
    assert core_record["auth"]["result"] == "missing"


def test_a_https_upstream_connect_407_behind_502(chain_a, tls_origin):
    core, edge, _ = chain_a
    url = tls_origin.url("/a-tls")
    result = curl("--cacert", edge.ca_file, "-x", edge.url, "--proxy-user", f"ann:{ANN_PW}", url)
    # mitmproxy answered the client's CONNECT itself; its own CONNECT to core got a 407
    assert status_of(result) == 502
    assert "refused HTTP CONNECT request: 407" in result.stdout
    record = wait_for_record(edge.hoplog, lambda r: r["path"] == "/a-tls")
    assert record["answered_by"] == {"kind": "upstream-proxy", "hop": f"127.0.0.1:{core.port}"}
    assert record["upstream_status"] == 407 and record["status"] == 502
    assert record["tunnel_id"] is not None
    tunnel = wait_for_record(edge.hoplog, lambda r: r["flow_id"] == record["tunnel_id"])
    assert tunnel["method"] == "CONNECT" and tunnel["status"] == 200
    assert tunnel["answered_by"] == {"kind": "this-proxy", "hop": "edge"} and tunnel["auth"]["user"] == "ann"
    # core saw edge's CONNECT (with edge's Via) and refused it
    connect = wait_for_record(core.hoplog, lambda r: r["method"] == "CONNECT" and r["port"] == tls_origin.port)
    assert connect["status"] == 407 and connect["answered_by"] == {"kind": "this-proxy", "hop": "core"}


def test_a_upstream_auth_passes_and_origin_sees_no_proxy_authorization(chain_a, origin, tls_origin):
    core, _, edge = chain_a
    result = curl("-x", edge.url, "--proxy-user", f"ann:{ANN_PW}", origin.url("/a-pass"))
    assert status_of(result) == 200
    assert origin.seen[-1].path == "/a-pass" and "proxy-authorization" not in origin.seen[-1].headers
    # edge's Via reached the origin; core added its own
    assert origin.seen[-1].headers["via"] == "1.1 core"  # the last Via line (the origin keeps one per name)
    url = tls_origin.url("/a-pass-tls")
    result = curl("--cacert", edge.ca_file, "-x", edge.url, "--proxy-user", f"ann:{ANN_PW}", url)
    assert status_of(result) == 200, result.stderr
    assert tls_origin.seen[-1].path == "/a-pass-tls" and "proxy-authorization" not in tls_origin.seen[-1].headers
    record = wait_for_record(edge.hoplog, lambda r: r["path"] == "/a-pass")
    assert record["answered_by"] == {"kind": "origin", "hop": f"127.0.0.1:{origin.port}"}
    core_record = wait_for_record(core.hoplog, lambda r: r["path"] == "/a-pass")
    assert core_record["auth"]["user"] == "ben" and core_record["auth"]["result"] == "ok"
    assert core_record["findings"] == []


# -- b) client -> edge (ann) -> Squid (sam) -> origin --------------------------------


@pytest.fixture(scope="module")
def squid(logdir):
    if not squid_helper.available():
        pytest.skip("Debian squid is not installed (make test installs it)")
    proxy = squid_helper.start_squid(logdir / f"squid-{os.getpid()}-{time.monotonic_ns()}", {"sam": SAM_PW})
    yield proxy
    proxy.stop()


def test_b_squid_407_attributed_to_squid(squid, mitmdump_factory, logdir, scenarios, origin, tls_origin):
    edge = hop(mitmdump_factory, logdir, "edge", scenarios["edge"], upstream=squid.url)
    result = curl("-i", "-x", edge.url, "--proxy-user", f"ann:{ANN_PW}", origin.url("/b-plain"))
    assert status_of(result) == 407 and "X-Squid-Error: ERR_CACHE_ACCESS_DENIED" in result.stdout
    record = wait_for_record(edge.hoplog, lambda r: r["path"] == "/b-plain")
    assert record["answered_by"] == {"kind": "upstream-proxy", "hop": squid_helper.VISIBLE_HOSTNAME}
    squid_via = record["via"][0]
    assert (squid_via["protocol"], squid_via["received_by"]) == ("1.1", "squid-test")
    assert squid_via["comment"].startswith("squid/") and record["via"][1]["received_by"] == "edge"
    url = tls_origin.url("/b-tls")
    result = curl("--cacert", edge.ca_file, "-x", edge.url, "--proxy-user", f"ann:{ANN_PW}", url)
    assert status_of(result) == 502
    record = wait_for_record(edge.hoplog, lambda r: r["path"] == "/b-tls")
    assert record["answered_by"] == {"kind": "upstream-proxy", "hop": f"127.0.0.1:{squid.port}"}
    assert record["upstream_status"] == 407
    assert "TCP_DENIED/407" in (squid.directory / "access.log").read_text()


def test_b_squid_with_upstream_auth_passes(squid, mitmdump_factory, logdir, scenarios, origin, tls_origin):
    edge = hop(mitmdump_factory, logdir, "edge", scenarios["edge"], upstream=squid.url, upstream_auth=f"sam:{SAM_PW}")
    assert status_of(curl("-x", edge.url, "--proxy-user", f"ann:{ANN_PW}", origin.url("/b-pass"))) == 200
    assert "proxy-authorization" not in origin.seen[-1].headers
    assert "squid-test" in origin.seen[-1].headers["via"]
    url = tls_origin.url("/b-pass-tls")
    result = curl("--cacert", edge.ca_file, "-x", edge.url, "--proxy-user", f"ann:{ANN_PW}", url)
    assert status_of(result) == 200, result.stderr
    assert "proxy-authorization" not in tls_origin.seen[-1].headers
    record = wait_for_record(edge.hoplog, lambda r: r["path"] == "/b-pass")
    assert record["answered_by"]["kind"] == "origin"
    assert any(v["received_by"] == "squid-test" for v in record["via"])
    access = (squid.directory / "access.log").read_text()
    assert " sam " in access and "CONNECT" in access


# -- c) hops down -----------------------------------------------------------------------


def test_c_upstream_proxy_down_is_connection_refused_at_edge(mitmdump_factory, logdir, scenarios, origin):
    dead = free_port()
    edge = hop(mitmdump_factory, logdir, "edge", scenarios["edge"], upstream=f"http://127.0.0.1:{dead}")
    result = curl("-x", edge.url, "--proxy-user", f"ann:{ANN_PW}", origin.url("/c-down"))
    assert status_of(result) == 502
    record = wait_for_record(edge.hoplog, lambda r: r["path"] == "/c-down")
    assert record["answered_by"] == {"kind": "this-proxy", "hop": "edge"}
    assert record["error"]["type"] == "connection_refused"
    assert record["error"]["next_hop"] == f"127.0.0.1:{dead}"
    assert record["proxy_status"] == [
        {"hop": "edge", "params": {"error": "connection_refused", "next-hop": f"127.0.0.1:{dead}"}}
    ]


def test_c_origin_down_behind_core_is_core_s_connection_refused(chain_a, origin):
    core, _, edge = chain_a
    dead = free_port()
    result = curl("-x", edge.url, "--proxy-user", f"ann:{ANN_PW}", f"http://127.0.0.1:{dead}/c-origin-down")
    assert status_of(result) == 502
    record = wait_for_record(edge.hoplog, lambda r: r["path"] == "/c-origin-down")
    assert record["answered_by"] == {"kind": "upstream-proxy", "hop": f"127.0.0.1:{core.port}"}
    assert record["error"]["type"] == "connection_refused"
    core_record = wait_for_record(core.hoplog, lambda r: r["path"] == "/c-origin-down")
    assert core_record["answered_by"] == {"kind": "this-proxy", "hop": "core"}
    assert core_record["error"]["type"] == "connection_refused"
    assert core_record["error"]["next_hop"] == f"127.0.0.1:{dead}"


# -- entry scripts, switches, summary, report ----------------------------------------------


@pytest.mark.parametrize("order", ["proxyauth-first", "hoplog-first"])
def test_both_entry_scripts_together_give_one_hop_log(mitmdump_factory, logdir, origin, order):
    from procs import HOPLOG

    scripts = (PROXYAUTH, HOPLOG) if order == "proxyauth-first" else (HOPLOG, PROXYAUTH)
    path = logdir / f"hops-both-{order}.jsonl"
    dump = mitmdump_factory(options={"hoplog": str(path), "hop_name": "both"}, scripts=scripts)
    assert status_of(curl("-x", dump.url, origin.url(f"/both-{order}"))) == 407
    assert status_of(curl("-x", dump.proxy_url("demo", "mitm407"), origin.url(f"/both-{order}"))) == 200
    wait_for_record(path, lambda r: r["status"] == 200)
    assert [r["status"] for r in read_hop_log(path)] == [407, 200]
    assert "already exists" not in dump.log and "Traceback" not in dump.log


def test_hoplog_alone_switches_and_leak_to_origin(mitmdump_factory, logdir, origin):
    from procs import HOPLOG, basic

    path = logdir / "hops-alone.jsonl"
    dump = mitmdump_factory(
        options={"hoplog": str(path), "hop_via": "false", "hop_proxy_status": "false", "hoplog_query_values": "true"},
        scripts=(HOPLOG,),
    )
    leaked = basic("ann", ANN_PW)
    result = curl("-i", "-x", dump.url, "-H", f"Proxy-Authorization: {leaked}", origin.url("/alone?q=1"))
    assert status_of(result) == 200 and "Via:" not in result.stdout and "Proxy-Status" not in result.stdout
    assert "via" not in origin.seen[-1].headers
    record = wait_for_record(path, lambda r: r["path"].startswith("/alone"))
    assert record["path"] == "/alone?q=1" and record["auth"] is None
    assert record["findings"] == [
        {"kind": "proxy-authorization-to-origin", "header": "Proxy-Authorization", "scheme": "basic", "user": "ann"}
    ]
    dump.stop()
    assert "hop log: 1 flows" in dump.log and "proxy-authorization-to-origin" in dump.log
    report = mitm407_cli("report", str(path), "--format", "json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["flows"] == 1 and data["findings"] == {"proxy-authorization-to-origin": 1}
    markdown = mitm407_cli("report", str(path), "--format", "markdown").stdout
    assert "| origin 127.0.0.1:" in markdown and "| proxy-authorization-to-origin | 1 |" in markdown
    missing = mitm407_cli("report", str(logdir / "nope.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr


# -- CVE-2023-32681: requests 2.30.0 leaks Proxy-Authorization on a redirect to https ------------

LEAK_CLIENT = """
import sys, requests
proxy, url, ca = sys.argv[1:4]
r = requests.get(url, proxies={"http": proxy, "https": proxy}, verify=ca, timeout=20)
print(requests.__version__, r.status_code, r.url)
"""


@pytest.fixture(scope="module")
def old_requests(tmp_path_factory) -> Path:
    """requests 2.30.0 in a throwaway folder (PYTHONPATH), never in the test venv."""
    target = tmp_path_factory.mktemp("requests-2.30.0")
    result = run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(target),
         "requests==2.30.0"],
        timeout=240,
    )
    if result.returncode != 0:
        pytest.skip(f"pip could not install requests==2.30.0 (no package index?): {result.stderr[-300:]}")
    return target


@pytest.mark.parametrize("version", ["2.30.0", "installed"])
def test_cve_2023_32681_leak_is_a_finding(mitmdump_factory, logdir, scenarios, origin, tls_origin, version, request):
    path = logdir / f"hops-cve-{version}.jsonl"
    dump = mitmdump_factory(options={"scenario": str(scenarios["edge"]), "hoplog": str(path), "hop_name": "edge"})
    target = tls_origin.url(f"/landed-{version}")
    origin.routes[f"/redirect-{version}"] = lambda handler, body: (302, {"Location": target}, b"")
    env = dict(os.environ)
    if version == "2.30.0":
        env["PYTHONPATH"] = str(request.getfixturevalue("old_requests"))
    client = run(
        [sys.executable, "-c", LEAK_CLIENT, dump.proxy_url("ann", ANN_PW), origin.url(f"/redirect-{version}"),
         dump.ca_file],
        env=env,
    )
    assert client.returncode == 0, client.stderr[-2000:]
    assert client.stdout.split()[1] == "200"
    landed = next(s for s in tls_origin.seen if s.path == f"/landed-{version}")
    record = wait_for_record(path, lambda r: r["path"] == f"/landed-{version}")
    assert record["tunnel_id"] is not None
    if version == "2.30.0":
        assert client.stdout.startswith("2.30.0 ")
        assert "proxy-authorization" in landed.headers  # the real bug: it reached the origin
        assert record["findings"] == [
            {"kind": "proxy-authorization-in-tunnel", "header": "Proxy-Authorization", "scheme": "basic", "user": "ann"}
        ]
        assert "credential leak: Proxy-Authorization (basic, user 'ann') inside a CONNECT tunnel" in dump.log
    else:
        assert "proxy-authorization" not in landed.headers and record["findings"] == []


# -- python -m mitm407 chain -------------------------------------------------------------


def test_chain_command_starts_and_stops_hops(logdir, confdir, scenarios, origin):
    port = free_port()
    out_path = logdir / f"chain-{port}.log"
    hoplogs = logdir / f"chain-{port}"
    args = [
        sys.executable, "-m", "mitm407", "chain", "--port", str(port),
        "--hop", f"edge:{scenarios['edge']}", "--hop", f"core:{scenarios['core']}",
        "--upstream-auth", f"edge=ben:{BEN_PW}", "--hoplog-dir", str(hoplogs),
        "--", "--set", f"confdir={confdir}", "--set", "ssl_insecure=true",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "addons")}
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    try:
        wait_for_port(port, proc, timeout=60)
        deadline = time.monotonic() + 30
        while "chain ready" not in out_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status_of(curl("-x", f"http://127.0.0.1:{port}", "--proxy-user", f"ann:{ANN_PW}",
                              origin.url("/chain"))) == 200
        assert status_of(curl("-x", f"http://127.0.0.1:{port}", origin.url("/chain-407"))) == 407
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C does
        assert proc.wait(timeout=30) == 0
    finally:
        stop_process(proc)
    output = out_path.read_text()
    assert "mitm407 chain ready: client -> edge" in output and "mitm407 chain stopped" in output
    ports = [int(p) for p in __import__("re").findall(r"\((\d+)\)", output.split("chain ready", 1)[1].split("\n")[0])]
    for hop_port in ports:  # every hop is gone
        with pytest.raises(OSError):
            __import__("socket").create_connection(("127.0.0.1", hop_port), timeout=1).close()
    edge_records = read_hop_log(hoplogs / "edge.jsonl")
    core_records = read_hop_log(hoplogs / "core.jsonl")
    assert [r["answered_by"]["kind"] for r in edge_records] == ["origin", "this-proxy"]
    assert core_records[0]["auth"]["user"] == "ben" and "[edge]" in output and "[core]" in output


# -- hop_relay_connect_refusal: the client gets the upstream's own 407 on its CONNECT ----------------


def test_a_relay_upstream_connect_407_to_the_client(chain_a, mitmdump_factory, logdir, scenarios, tls_origin):
    from procs import basic, raw_exchange

    core = chain_a[0]
    edge = hop(mitmdump_factory, logdir, "edge", scenarios["edge"], upstream=core.url,
               hop_relay_connect_refusal="true")
    authority = f"127.0.0.1:{tls_origin.port}"
    connect = (
        f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        f"Proxy-Authorization: {basic('ann', ANN_PW)}\r\n\r\n"
    ).encode()
    (answer,) = raw_exchange(edge.port, [connect])
    head, _, body = answer.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    assert lines[0] == "HTTP/1.1 407 Proxy Authentication Required"
    assert 'Proxy-Authenticate: Basic realm="CORE", charset="UTF-8"' in lines
    assert "Via: 1.1 edge" in lines  # on the probe (core's member) and on the relayed answer (ours)
    assert 'Proxy-Status: core; error=http_request_denied; details="no Proxy-Authorization header"' in lines
    assert "Proxy-Status: edge" in lines
    assert "core (mitm407) refused this request" in body
    record = wait_for_record(edge.hoplog, lambda r: r["method"] == "CONNECT")
    assert record["status"] == 407 and record["answered_by"] == {"kind": "upstream-proxy", "hop": "core"}
    assert record["auth"]["user"] == "ann"

    passing = hop(mitmdump_factory, logdir, "edge", scenarios["edge"], upstream=core.url,
                  hop_relay_connect_refusal="true", upstream_auth=f"ben:{BEN_PW}")
    url = tls_origin.url("/relay-pass")
    result = curl("--cacert", passing.ca_file, "-x", passing.url, "--proxy-user", f"ann:{ANN_PW}", url)
    assert status_of(result) == 200, result.stderr
    assert "proxy-authorization" not in tls_origin.seen[-1].headers


def test_unwritable_hop_log_at_startup_is_a_clear_error(confdir, tmp_path):
    from procs import HOPLOG, MITMDUMP

    path = tmp_path / "no-such-dir" / "hops.jsonl"
    result = run([MITMDUMP, "-p", "0", "-s", HOPLOG, "--set", f"hoplog={path}", "--set", f"confdir={confdir}"])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"cannot open hop log {path}: No such file or directory" in output
    assert "Traceback" not in output


def test_leaky_proxy_scenario_is_flagged_by_the_hop_log(mitmdump_factory, logdir, origin):
    """scenarios/leaky-proxy.yaml's header promises the hop log flags its deliberate leak."""
    register_secret("oscar", "do-not-leak")
    path = logdir / "hops-leaky.jsonl"
    dump = mitmdump_factory(options={"scenario": "leaky-proxy", "hoplog": str(path)})
    assert status_of(curl("-x", dump.proxy_url("oscar", "do-not-leak"), origin.url("/leaky"))) == 200
    assert "proxy-authorization" in origin.seen[-1].headers  # the fault did leak it
    record = wait_for_record(path, lambda r: r["path"] == "/leaky")
    assert record["findings"] == [
        {"kind": "proxy-authorization-to-origin", "header": "Proxy-Authorization", "scheme": "basic", "user": "oscar"}
    ]
    assert [f["name"] for f in record["faults"]] == ["hop_by_hop"]
