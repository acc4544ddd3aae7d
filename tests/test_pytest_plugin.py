"""The ``mitm407_proxy`` fixture (the package's pytest plugin) with real proxies and real clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import requests

from mitm407.core.problems import ScenarioError
from mitm407.testing import proxy as testing_proxy
from mitm407.testing.proxy import ControlAPIError
from procs import curl, free_port, register_secret


@pytest.mark.e2e
def test_fixture_gives_a_working_proxy_url_env_and_hops(mitm407_proxy, origin):
    proxy = mitm407_proxy("default")
    refused = requests.get(origin.url("/a"), proxies={"http": proxy.url}, timeout=20)
    passed = requests.get(origin.url("/b"), proxies={"http": proxy.url_for("demo")}, timeout=20)
    assert (refused.status_code, passed.status_code) == (407, 200)
    env = proxy.env("demo")
    assert env["HTTP_PROXY"] == env["http_proxy"] == proxy.url_for("demo") and "127.0.0.1" in env["NO_PROXY"]
    by_env = curl("--noproxy", "", origin.url("/c"), env={"PATH": os.environ["PATH"], "http_proxy": env["http_proxy"]})
    assert by_env.stdout.endswith("200")
    hops = proxy.hops()
    assert [h["status"] for h in hops][:3] == [407, 200, 200]
    assert os.path.exists(proxy.ca_cert)
    assert "mitm407" not in {h.get("auth", {}).get("user") for h in hops}  # only real users are named


@pytest.mark.e2e
def test_dict_scenario_and_percent_encoded_credentials(mitm407_proxy, origin):
    password = "p@ss:w/rd %"
    proxy = mitm407_proxy({"name": "inline", "realm": "t", "users": {"ana": password}, "schemes": ["basic"]})
    assert "p%40ss%3Aw%2Frd%20%25" in proxy.url_for("ana")
    assert requests.get(origin.url("/d"), proxies={"http": proxy.url_for("ana")}, timeout=20).status_code == 200
    with pytest.raises(KeyError):
        proxy.url_for("nobody")


@pytest.mark.e2e
def test_failed_test_gets_the_proxy_log_and_every_proxy_is_stopped(tmp_path):
    test_file = tmp_path / "test_fails.py"
    test_file.write_text(textwrap.dedent("""
        import pathlib
        def test_fails(mitm407_proxy):
            proxy = mitm407_proxy("default")
            pathlib.Path("pid").write_text(str(proxy.process.proc.pid))
            assert False, "on purpose"
    """))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "mitm407 proxy log #0" in result.stdout and "Loading script" in result.stdout
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- the control API through the proxy object's methods ------------------------------

ANA = register_secret("ana", "fixture-ana-pw")
DIGEST_TTL_60 = {"name": "stale", "realm": "fx", "schemes": ["digest"], "users": {"ana": ANA},
                 "digest": {"algorithms": ["MD5"], "qop": ["auth"], "nonce_ttl": 60}}


@pytest.mark.e2e
def test_control_answers_as_soon_as_the_fixture_returns_and_advance_makes_a_nonce_stale(mitm407_proxy, origin):
    proxy = mitm407_proxy(DIGEST_TTL_60, control=True)
    assert proxy.advance(61) == 61.0  # the very first call after start: the control API already answers

    def late_redirect(handler, body):  # curl holds a nonce now; the proxy's clock passes its nonce_ttl
        proxy.advance(61)
        return 302, {"Location": "/fixture-after-stale"}, b""

    origin.routes["/fixture-stale"] = late_redirect
    result = curl("-v", "-L", "-x", proxy.url, "--proxy-digest", "-U", f"ana:{ANA}", origin.url("/fixture-stale"))
    assert result.stdout.endswith("200"), result.stderr
    challenges = [line for line in result.stderr.splitlines() if line.startswith("< Proxy-Authenticate: Digest")]
    assert len(challenges) == 2 and "stale=true" in challenges[1] and "stale" not in challenges[0]
    assert [h["auth"]["result"] for h in proxy.hops()][-2:] == ["stale", "ok"]
    assert proxy.status()["clock"] == {"offset": 122.0}


@pytest.mark.e2e
def test_lock_unlock_expire_and_switch_scenario_with_requests(mitm407_proxy, origin):
    proxy = mitm407_proxy("default", options={"control_port": str(free_port())})  # the API on request, as before
    as_demo = {"http": proxy.url_for("demo")}

    def status_code(proxies: dict[str, str]) -> int:
        return requests.get(origin.url("/fixture-lock"), proxies=proxies, timeout=20).status_code

    assert status_code(as_demo) == 200
    proxy.lock("demo")
    assert status_code(as_demo) == 407 and proxy.status()["overrides"]["locked"] == ["demo"]
    assert proxy.unlock("demo") is True and proxy.unlock("demo") is False
    assert status_code(as_demo) == 200
    assert proxy.expire() == ["demo"]
    proxy.reset()
    proxy.switch_scenario({"name": "switched", "realm": "fx", "schemes": ["basic"], "users": {"ana": ANA}})
    assert proxy.status()["scenario"]["name"] == "switched"
    assert status_code({"http": proxy.url_for("ana")}) == 200 and status_code(as_demo) == 407
    with pytest.raises(KeyError):
        proxy.url_for("demo")  # url_for follows the running scenario


@pytest.mark.e2e
def test_control_api_errors_raise_with_the_api_message(mitm407_proxy):
    proxy = mitm407_proxy("default", control=True)
    with pytest.raises(ControlAPIError) as locked:
        proxy.lock("nobody")
    assert str(locked.value) == "POST /lock: 404 no such user in the scenario" and locked.value.status == 404
    assert locked.value.__context__ is None  # no urllib HTTPError chained to it
    with pytest.raises(ControlAPIError, match=r"^POST /clock: 400 advance must be more than 0 seconds"):
        proxy.advance(0)
    with pytest.raises(ControlAPIError, match=r"^POST /rotate: 409 the scenario has no 'rotate' fault$"):
        proxy.rotate()
    with pytest.raises(ScenarioError, match="scenario-1.yaml"):
        proxy.switch_scenario({"name": "broken", "schemes": ["no-such-scheme"], "users": {"ana": ANA}})
    assert proxy.status()["scenario"]["name"] == "default"  # nothing changed
    proxy.stop()
    with pytest.raises(ControlAPIError, match=r"^cannot reach the control API at 127\.0\.0\.1:\d+: ") as gone:
        proxy.status()
    assert gone.value.status is None and gone.value.__suppress_context__  # urllib's URLError not shown
    assert "Traceback" not in proxy.log


@pytest.mark.e2e
def test_a_control_token_reaches_the_proxy_by_environment_not_command_line(mitm407_proxy):
    token = register_secret("control token", "plugin-token-5b1e")
    proxy = mitm407_proxy("default", options={"control_token": token}, control=True)
    assert proxy.status()["scenario"]["name"] == "default"  # the client sends it, the proxy wants it
    with open(f"/proc/{proxy.process.proc.pid}/cmdline", "rb") as f:
        assert token.encode() not in f.read()  # other local users see command lines (ps)
    bare = testing_proxy.ControlEndpoint(proxy.control.port, proxy.control.host)  # without the token
    with pytest.raises(ControlAPIError, match="401"):
        testing_proxy.controlclient.call(bare, "status")


@pytest.mark.e2e
def test_without_control_the_methods_say_how_to_turn_it_on(mitm407_proxy):
    proxy = mitm407_proxy("default")
    with pytest.raises(RuntimeError, match=r"control=True"):
        proxy.expire()


@pytest.mark.e2e
def test_a_control_api_that_never_answers_fails_the_start_with_the_log(mitm407_proxy, monkeypatch):
    monkeypatch.setattr(testing_proxy, "CONTROL_START_TIMEOUT", 3.0)
    with socket.socket() as taken:  # bound, not listening: the proxy cannot listen there, connections are refused
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"mitm407 control API did not answer on 127.0.0.1:{port}") as failed:
            mitm407_proxy("default", options={"control_port": str(port)})
    assert "control API cannot listen" in str(failed.value)
