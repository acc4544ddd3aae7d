"""Without its dependencies the proxy refuses everything and says what to install; it never runs open."""

from __future__ import annotations

import json
import subprocess

import pytest

from procs import HOPLOG, MITMDUMP, PROXYAUTH, curl, free_port, stop_process, wait_for_port

BLOCK_YAML = "raise ImportError(\"No module named 'yaml'\", name='yaml')\n"


@pytest.fixture
def no_yaml(tmp_path):
    """A PYTHONPATH directory whose ``yaml`` fails to import, as in a bare mitmproxy install."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "yaml.py").write_text(BLOCK_YAML)
    return str(shadow)


@pytest.mark.e2e
def test_missing_pyyaml_one_line_and_no_start(no_yaml, tmp_path):
    port = free_port()
    result = subprocess.run(
        [MITMDUMP, "-s", PROXYAUTH, "-p", str(port), "--listen-host", "127.0.0.1", "--set", f"confdir={tmp_path}"],
        capture_output=True, text=True, timeout=60, env={"PYTHONPATH": no_yaml, "PATH": "/usr/bin:/bin"},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output, output
    assert "module 'yaml' is missing" in output and "pipx inject mitmproxy" in output and "pyyaml" in output


@pytest.mark.e2e
def test_missing_dependency_after_start_refuses_instead_of_forwarding(no_yaml, tmp_path, origin):
    """Loaded when mitmproxy is already running (a script reload), the placeholder answers 503."""
    script = tmp_path / "late.py"
    # The error line is logged at load; from a reload mitmproxy keeps running: then every request gets 503.
    script.write_text(
        "import logging\nfrom mitm407.proxy.unavailable import Unavailable\n"
        "class Quiet(Unavailable):\n    def load(self, loader):\n        logging.getLogger('x').warning(self.reason)\n"
        "addons = [Quiet('mitm407 cannot start: test')]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [MITMDUMP, "-s", str(script), "-p", str(port), "--listen-host", "127.0.0.1", "--set", f"confdir={tmp_path}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={"PYTHONPATH": str(__import__("procs").REPO / "addons"), "PATH": "/usr/bin:/bin"},
    )
    try:
        wait_for_port(port, proc)
        plain = curl("-x", f"http://127.0.0.1:{port}", origin.url("/late"))
        tunnel = curl("-x", f"http://127.0.0.1:{port}", "-k", "https://127.0.0.1:1/")
    finally:
        stop_process(proc)
    assert plain.stdout.endswith("503") and not origin.seen
    assert "CONNECT tunnel failed, response 503" in tunnel.stderr, tunnel.stderr


@pytest.mark.e2e
def test_hop_log_runs_in_a_mitmproxy_without_pyyaml_or_pyspnego(tmp_path, origin):
    """``addons/hoplog.py`` needs nothing but mitmproxy: it loads in a bare mitmproxy environment.

    (bcrypt is not hidden: mitmproxy itself imports it, 11 through passlib and 12 directly.)"""
    shadow = tmp_path / "bare"
    shadow.mkdir()
    for module in ("yaml", "spnego", "gssapi"):
        (shadow / f"{module}.py").write_text(f"raise ImportError('No module named {module!r}', name={module!r})\n")
    hops = tmp_path / "hops.jsonl"
    port = free_port()
    proc = subprocess.Popen(
        [MITMDUMP, "-s", HOPLOG, "-p", str(port), "--listen-host", "127.0.0.1", "--set", f"confdir={tmp_path}",
         "--set", f"hoplog={hops}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={"PYTHONPATH": str(shadow), "PATH": "/usr/bin:/bin"},
    )
    try:
        wait_for_port(port, proc)
        answered = curl("-x", f"http://127.0.0.1:{port}", origin.url("/bare"))
    finally:
        stop_process(proc)
    assert answered.stdout.endswith("200")
    record = json.loads(hops.read_text().splitlines()[-1])
    assert record["status"] == 200 and record["answered_by"]["kind"] == "origin"
