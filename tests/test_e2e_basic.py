"""End to end: real mitmdump with addons/proxyauth.py, a real origin, real clients."""

from __future__ import annotations

import base64
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
import requests

from procs import basic, curl, raw_exchange, register_secret, run

pytestmark = pytest.mark.e2e

ALICE_PW = "s3cret:with:colons"
UTF8_USER, UTF8_PW = "jürgen", "pässwörd€"
BOB_PW = "bob-from-env-4711"
for _user, _password in (("alice", ALICE_PW), (UTF8_USER, UTF8_PW), ("bob", BOB_PW), ("bob", "hunter2")):
    register_secret(_user, _password)  # tests/secretscan.py greps every log for them

SCENARIO = textwrap.dedent(
    f"""\
    version: 1
    name: e2e-basic
    description: Basic with colon and UTF-8 passwords, bypass and deny rules.
    realm: "Test Realm"
    users:
      alice: "{ALICE_PW}"
      {UTF8_USER}: "{UTF8_PW}"
      bob: env:TEST_BOB_PASSWORD
    rules:
      - match: {{path: /public}}
        auth: none
      - match: {{path: /forbidden}}
        auth: deny
        name: no-forbidden
    default: required
    """
)


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "e2e.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def proxy(module_mitmdump, scenario_file: Path):
    return module_mitmdump(options={"scenario": str(scenario_file)}, env={"TEST_BOB_PASSWORD": BOB_PW})


def status_of(result) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1])


def proxy_auth_seen(origin) -> list[str]:
    return [s.headers["proxy-authorization"] for s in origin.seen if "proxy-authorization" in s.headers]


def test_407_shape_then_retry_on_same_connection(proxy, origin):
    before = len(origin.seen)
    target = f"http://127.0.0.1:{origin.port}/shape"
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n\r\n".encode()
    authed = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n"
        f"Proxy-Authorization: {basic('alice', ALICE_PW)}\r\n\r\n"
    ).encode()
    first, second = raw_exchange(proxy.port, [request, authed])
    head, _, body = first.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 407 Proxy Authentication Required"
    headers = [line.split(": ", 1) for line in lines[1:]]
    assert ["Proxy-Authenticate", 'Basic realm="Test Realm", charset="UTF-8"'] in headers
    length = next(int(v) for k, v in headers if k.lower() == "content-length")
    assert length == len(body) and b"no Proxy-Authorization header" in body
    assert not any(k.lower() == "connection" and v.lower() == "close" for k, v in headers)
    # the retry went over the same connection and reached the origin once
    assert second.startswith(b"HTTP/1.1 200")
    assert len(origin.seen) == before + 1
    assert "proxy-authorization" not in origin.seen[-1].headers


def test_curl_password_with_colons(proxy, origin):
    result = curl("-x", proxy.url, "--proxy-basic", "--proxy-user", f"alice:{ALICE_PW}", origin.url("/curl"))
    assert status_of(result) == 200, result.stderr
    assert origin.seen[-1].path == "/curl"
    assert proxy_auth_seen(origin) == []


def test_curl_wrong_password_and_no_credentials(proxy, origin):
    before = len(origin.seen)
    assert status_of(curl("-x", proxy.url, "--proxy-user", "alice:wrong", origin.url("/x"))) == 407
    assert status_of(curl("-x", proxy.url, origin.url("/x"))) == 407
    assert len(origin.seen) == before  # the origin was never contacted
    log = proxy.wait_for_log("wrong password for user 'alice'")
    assert "no Proxy-Authorization header" in log
    assert "wrong" not in log.replace("wrong password", "")  # the password itself is never logged


def test_env_password(proxy, origin):
    assert status_of(curl("-x", proxy.proxy_url("bob", BOB_PW), origin.url("/bob"))) == 200


def test_requests_utf8_credentials_in_proxy_url(proxy, origin):
    # requests percent-decodes the URL and encodes Basic as ISO-8859-1: the
    # proxy's Latin-1 fallback makes that work; € is not Latin-1, so use
    # a UTF-8 client for the full password below.
    proxies = {"http": proxy.proxy_url("alice", ALICE_PW)}
    assert requests.get(origin.url("/requests"), proxies=proxies, timeout=10).status_code == 200
    r = requests.get(origin.url("/requests"), proxies={"http": proxy.url}, timeout=10)
    assert r.status_code == 407 and r.headers["Proxy-Authenticate"].startswith("Basic realm=")


def test_curl_utf8_credentials(proxy, origin):
    result = curl("-x", proxy.url, "--proxy-user", f"{UTF8_USER}:{UTF8_PW}", origin.url("/utf8"))
    assert status_of(result) == 200


def test_urllib_proxy_basic_auth_handler(proxy, origin):
    handler = urllib.request.ProxyBasicAuthHandler()
    handler.add_password("Test Realm", proxy.url, "alice", ALICE_PW)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}), handler)
    with opener.open(origin.url("/urllib"), timeout=10) as response:
        assert response.status == 200
    # urllib answered the challenge: the origin got the request, without the header
    assert origin.seen[-1].path == "/urllib" and proxy_auth_seen(origin) == []
    bad = urllib.request.ProxyBasicAuthHandler()
    bad.add_password("Test Realm", proxy.url, "alice", "nope")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}), bad)
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(origin.url("/urllib-bad"), timeout=10)
    assert e.value.code == 407


def test_httpx(proxy, origin):
    with httpx.Client(proxy=proxy.proxy_url("alice", ALICE_PW), timeout=10) as client:
        assert client.get(origin.url("/httpx")).status_code == 200
    with httpx.Client(proxy=proxy.url, timeout=10) as client:
        assert client.get(origin.url("/httpx")).status_code == 407


def test_bypass_and_deny_rules(proxy, origin):
    assert status_of(curl("-x", proxy.url, origin.url("/public/page"))) == 200
    assert origin.seen[-1].path == "/public/page"
    before = len(origin.seen)
    result = curl("-i", "-x", proxy.url, "--proxy-user", f"alice:{ALICE_PW}", origin.url("/forbidden"))
    assert status_of(result) == 403
    assert "Proxy-Authenticate" not in result.stdout
    assert "denied by rule 2 'no-forbidden'" in result.stdout
    assert len(origin.seen) == before


@pytest.mark.parametrize(
    "value",
    [
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic",
        "Bearer abc",
        "Basic " + "A" * 70000,
        "  bAsIc   " + base64.b64encode(b"alice:wrong").decode() + "  ",
    ],
)
def test_malformed_credentials_get_407(proxy, origin, value):
    result = curl("-x", proxy.url, "-H", f"Proxy-Authorization: {value}", origin.url("/bad"))
    assert status_of(result) == 407


def test_scheme_case_and_spaces_tolerated(proxy, origin):
    token = base64.b64encode(f"alice:{ALICE_PW}".encode()).decode()
    result = curl("-x", proxy.url, "-H", f"Proxy-Authorization:   bAsIc    {token}", origin.url("/case"))
    assert status_of(result) == 200


def test_connect_with_tls_interception(proxy, tls_origin):
    url = tls_origin.url("/tls")
    good = curl("--cacert", proxy.ca_file, "-x", proxy.url, "--proxy-user", f"alice:{ALICE_PW}", url, url)
    assert good.returncode == 0 and good.stdout.endswith("200"), good.stderr
    # two requests inside the one authenticated tunnel, neither challenged
    assert [s.path for s in tls_origin.seen[-2:]] == ["/tls", "/tls"]
    assert proxy_auth_seen(tls_origin) == []
    refused = curl("--cacert", proxy.ca_file, "-x", proxy.url, url)
    assert refused.returncode == 56 and "407" in refused.stderr


def test_connect_with_ignore_hosts_passthrough(mitmdump_factory, scenario_file, tls_origin):
    dump = mitmdump_factory(
        options={"scenario": str(scenario_file), "ignore_hosts": "127.0.0.1"},
        env={"TEST_BOB_PASSWORD": BOB_PW},
    )
    url = tls_origin.url("/passthrough")
    ok = curl("-k", "-x", dump.url, "--proxy-user", f"alice:{ALICE_PW}", url)
    assert ok.stdout.endswith("200"), ok.stderr
    refused = curl("-k", "-x", dump.url, url)
    assert refused.returncode == 56 and "407" in refused.stderr


def test_reverse_mode_answers_401(mitmdump_factory, scenario_file, origin):
    dump = mitmdump_factory(
        options={"scenario": str(scenario_file)},
        extra=["--mode", f"reverse:http://127.0.0.1:{origin.port}"],
        env={"TEST_BOB_PASSWORD": BOB_PW},
    )
    result = curl("-i", f"http://127.0.0.1:{dump.port}/rev")
    assert status_of(result) == 401
    assert 'WWW-Authenticate: Basic realm="Test Realm"' in result.stdout
    ok = curl("--user", f"alice:{ALICE_PW}", f"http://127.0.0.1:{dump.port}/rev-ok")
    assert status_of(ok) == 200
    assert origin.seen[-1].path == "/rev-ok" and "authorization" not in origin.seen[-1].headers


def test_hot_reload_keeps_last_good(mitmdump_factory, tmp_path, origin):
    path = tmp_path / "reload.yaml"
    path.write_text("version: 1\nusers:\n  carol: first-pass\n")
    dump = mitmdump_factory(options={"scenario": str(path), "scenario_reload": "1"})
    url = origin.url("/reload")
    assert status_of(curl("-x", dump.proxy_url("carol", "first-pass"), url)) == 200
    path.write_text("version: 1\nusers:\n  carol: first-pass\nrealmm: oops\n")
    log = dump.wait_for_log("keeping the previous one")
    assert f"{path}:4:1: unknown key 'realmm'" in log and "did you mean 'realm'?" in log
    assert status_of(curl("-x", dump.proxy_url("carol", "first-pass"), url)) == 200
    path.write_text("version: 1\nusers:\n  carol: second-pass\n")
    dump.wait_for_log("reloaded scenario")
    assert status_of(curl("-x", dump.proxy_url("carol", "second-pass"), url)) == 200
    assert status_of(curl("-x", dump.proxy_url("carol", "first-pass"), url)) == 407
    assert "Traceback" not in dump.log


def test_default_scenario_without_options(mitmdump_factory, origin):
    dump = mitmdump_factory()
    log = dump.wait_for_log("how to authenticate")
    assert "scenario 'default'" in log and "realm 'mitm407'" in log
    assert status_of(curl("-x", dump.url, origin.url("/d"))) == 407
    assert status_of(curl("-x", dump.proxy_url("demo", "mitm407"), origin.url("/d"))) == 200


def test_passwords_not_announced_for_non_demo_scenarios(proxy):
    log = proxy.wait_for_log("passwords are defined in")
    for secret in (ALICE_PW, UTF8_PW, BOB_PW):
        assert secret not in log


def test_broken_scenario_at_startup_is_a_clear_error(tmp_path, logdir, confdir):
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nusers:\n  a: b\nschemes: [basic, digets]\n")
    from procs import MITMDUMP, PROXYAUTH

    result = run([MITMDUMP, "-p", "0", "-s", PROXYAUTH, "--set", f"scenario={path}", "--set", f"confdir={confdir}"])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{path}:4:18: unknown value 'digets'" in output
    assert "Traceback" not in output


def test_builtin_proxyauth_clash_is_a_clear_error(confdir):
    from procs import MITMDUMP, PROXYAUTH

    result = run([MITMDUMP, "-p", "0", "-s", PROXYAUTH, "--set", "proxyauth=a:b", "--set", f"confdir={confdir}"])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "built-in proxyauth option are both active" in output
    assert "Traceback" not in output


def test_options_listed_with_help(confdir):
    """mitmproxy 12 lists script options in --options; 11 loads scripts too late, so
    ``python -m mitm407 options`` prints the same on both."""
    import sys

    from mitmproxy.version import VERSION

    from procs import MITMDUMP, PROXYAUTH

    ours = run([sys.executable, "-m", "mitm407", "options"])
    assert ours.returncode == 0, ours.stderr
    outputs = [ours.stdout]
    if int(VERSION.split(".")[0]) >= 12:
        dumped = run([MITMDUMP, "-s", PROXYAUTH, "--set", f"confdir={confdir}", "--options"])
        assert dumped.returncode == 0, dumped.stderr
        outputs.append(dumped.stdout)
    for output in outputs:
        for option in ("scenario:", "scenario_reload:", "hop_name:"):
            assert option in output
        assert "mitm407 scenario" in output


def test_htpasswd_scenario_bcrypt_apr1_sha(mitmdump_factory, origin):
    dump = mitmdump_factory(options={"scenario": "scenarios/htpasswd.yaml"})
    for user in ("bcrypt", "md5", "sha"):
        ok = curl("-x", dump.proxy_url(f"{user}-user", f"{user}-pw"), origin.url(f"/{user}"), origin.url(f"/{user}"))
        assert ok.stdout.endswith("200"), (user, ok.stdout)
        assert status_of(curl("-x", dump.proxy_url(f"{user}-user", "wrong"), origin.url("/x"))) == 407
    assert "bcrypt-pw" not in dump.log and "$2y$" not in dump.log


def test_corp_basic_connect_port_rule(mitmdump_factory, tls_origin):
    dump = mitmdump_factory(options={"scenario": "corp-basic"})
    # the origin is not on 443, so "no-other-connect" denies the tunnel with 403
    result = curl("-k", "-x", dump.proxy_url("bob", "hunter2"), tls_origin.url("/"))
    assert result.returncode == 56 and "403" in result.stderr


def test_bypass_strips_credentials_before_the_origin(proxy, origin):
    """A bypass rule still consumes Proxy-Authorization: the next hop is the origin."""
    result = curl("-x", proxy.url, "--proxy-user", f"alice:{ALICE_PW}", origin.url("/public/with-creds"))
    assert status_of(result) == 200
    assert origin.seen[-1].path == "/public/with-creds"
    assert "proxy-authorization" not in origin.seen[-1].headers


def test_request_facts_target_is_absolute_form_for_a_forward_proxy():
    """mitmproxy hands hooks origin-form; a forward proxy's client sent absolute-form."""
    from mitmproxy.proxy import mode_specs
    from mitmproxy.test import tflow

    from mitm407.proxy.addon import request_facts

    flow = tflow.tflow()
    flow.client_conn.proxy_mode = mode_specs.ProxyMode.parse("regular")
    assert request_facts(flow).target == flow.request.url
    flow.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:http://127.0.0.1:1")
    assert request_facts(flow).target == flow.request.path
