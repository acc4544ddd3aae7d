"""``pip install .`` (not editable, from a copy of the tree) gives a working ``mitm407`` command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mitm407.cli.run import build_command
from procs import REPO, curl, free_port, run, stop_process, wait_for_port


def test_run_arguments():
    command, path = build_command(["corp.yaml", "-p", "3128", "--set", "x=1"])
    assert command[1:3] == ["-s", str(Path(command[2]))] and command[2].endswith("mitm407/proxyauth_script.py")
    assert command[3:] == ["--set", "scenario=corp.yaml", "--listen-host", "127.0.0.1", "-p", "3128", "--set", "x=1"]
    assert path == "corp.yaml"
    command, path = build_command(["-p", "3128"])  # no scenario: the default, shipped one
    assert path.endswith("default.yaml") and command[-2:] == ["-p", "3128"]
    assert build_command(["--", "digest-like"])[1].endswith("digest-like.yaml")
    # --listen-host given: no 127.0.0.1 added; mitmweb instead of mitmdump for `web`
    command, _ = build_command(["--listen-host", "0.0.0.0"], "mitmweb")
    assert command.count("--listen-host") == 1 and Path(command[0]).name == "mitmweb"


@pytest.mark.e2e
def test_pip_install_provides_the_command(tmp_path, origin):
    tree = tmp_path / "tree"
    shutil.copytree(
        REPO, tree, ignore=shutil.ignore_patterns(".git", ".venv*", "*.egg-info", "build", "__pycache__", ".*cache")
    )
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    installed = run([str(venv / "bin" / "pip"), "install", "-q", str(tree)], timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    mitm407 = str(venv / "bin" / "mitm407")
    elsewhere = tmp_path / "elsewhere"  # no checkout around: everything comes from the package
    elsewhere.mkdir()
    check = run([mitm407, "check", "default", "corp-basic"], cwd=elsewhere)
    assert check.returncode == 0, check.stderr
    assert f"{venv}/lib/" in check.stdout and "mitm407/scenarios/default.yaml: ok" in check.stdout
    assert run([mitm407, "capture", "--help"], cwd=elsewhere).returncode == 0
    port = free_port()
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 -- closed below
    proc = subprocess.Popen(
        [mitm407, "run", "-p", str(port), "--listen-host", "127.0.0.1", "--set", f"confdir={tmp_path / 'conf'}"],
        cwd=elsewhere,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc)
        refused = curl("-x", f"http://127.0.0.1:{port}", origin.url("/pip"))
        passed = curl("-x", f"http://demo:mitm407@127.0.0.1:{port}", origin.url("/pip"))
    finally:
        stop_process(proc)
        log.close()
    assert refused.stdout.endswith("407") and passed.stdout.endswith("200")
    output = (tmp_path / "run.log").read_text()
    assert "site-packages/mitm407/proxyauth_script.py" in output and "scenario 'default'" in output
