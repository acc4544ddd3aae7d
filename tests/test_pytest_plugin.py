"""The ``mitm407_proxy`` fixture (the package's pytest plugin) with real proxies and real clients."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import requests

from procs import curl


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
