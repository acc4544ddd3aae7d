"""The container image's entrypoint (``mitm407 container``), run outside a container; the image build if possible."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from procs import REPO, curl, free_port, stop_process, wait_for_port


def start_entrypoint(tmp_path, **env):
    port = free_port()
    environ = {
        **os.environ,
        "PYTHONPATH": str(REPO / "addons"),
        "MITM407_PORT": str(port),
        "MITM407_LISTEN_HOST": "127.0.0.1",  # inside a container the default 0.0.0.0 is the container's network
        "MITM407_CA_DIR": str(tmp_path / "ca"),
        **env,
    }
    out = open(tmp_path / "stdout.log", "wb")  # noqa: SIM115 -- closed by the caller through the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "mitm407", "container"], env=environ, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    try:
        wait_for_port(port, proc)
    except BaseException:  # it died or never listened: nothing is left running
        stop_process(proc)
        raise
    return proc, port


@pytest.mark.e2e
def test_entrypoint_serves_the_scenario_hop_log_on_stdout_and_ca_at_a_fixed_path(tmp_path, origin):
    proc, port = start_entrypoint(tmp_path, MITM407_SCENARIO="default")
    try:
        refused = curl("-x", f"http://127.0.0.1:{port}", origin.url("/ci"))
        passed = curl("-x", f"http://demo:mitm407@127.0.0.1:{port}", origin.url("/ci"))
    finally:
        stop_process(proc)
    assert refused.stdout.endswith("407") and passed.stdout.endswith("200")
    records = [json.loads(line) for line in (tmp_path / "stdout.log").read_text().splitlines() if line.startswith("{")]
    assert [r["status"] for r in records] == [407, 200]
    assert (tmp_path / "ca" / "mitmproxy-ca-cert.pem").is_file()


@pytest.mark.e2e
def test_entrypoint_refuses_a_broken_scenario_with_file_line_col(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nusers: {a: b}\nschemes: [basic]\nrealm: [x\n")
    result = subprocess.run(
        [sys.executable, "-m", "mitm407", "container"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO / "addons"), "MITM407_SCENARIO": str(bad),
             "MITM407_PORT": str(free_port()), "MITM407_LISTEN_HOST": "127.0.0.1"},
    )
    assert result.returncode == 1 and f"{bad}:" in result.stderr and "Traceback" not in result.stderr


def container_engine() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    ok = subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0
    return docker if ok else None


@pytest.mark.e2e
def test_image_builds_and_answers_407(tmp_path):
    docker = container_engine()
    if docker is None:
        pytest.skip("no container engine (docker daemon) on this machine: the entrypoint is tested without it above")
    tag = "mitm407-test:latest"
    built = subprocess.run([docker, "build", "-t", tag, str(REPO)], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    port = free_port()
    run = subprocess.run([docker, "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8080", tag],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    container = run.stdout.strip()
    try:
        wait_for_port(port, timeout=60)
        assert curl("-x", f"http://127.0.0.1:{port}", "http://example.invalid/").stdout.endswith("407")
    finally:
        subprocess.run([docker, "stop", container], capture_output=True, timeout=60)
