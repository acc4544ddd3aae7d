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


PLUGIN_USER_TEST = """
import requests


def test_through_mitm407(mitm407_proxy):
    proxy = mitm407_proxy("default", control=True)
    assert requests.get(ORIGIN, proxies={"http": proxy.url}, timeout=20).status_code == 407
    assert requests.get(ORIGIN, proxies={"http": proxy.url_for("demo")}, timeout=20).status_code == 200
    proxy.lock("demo")
    assert requests.get(ORIGIN, proxies={"http": proxy.url_for("demo")}, timeout=20).status_code == 407
    assert [hop["status"] for hop in proxy.hops()] == [407, 200, 407]
"""


@pytest.mark.e2e
def test_wheel_and_sdist_build_check_install_and_work(tmp_path, origin):
    """python -m build, twine check, the wheel in a fresh venv: mitm407 run/web/ctl and the pytest plugin."""
    tree = tmp_path / "tree"
    shutil.copytree(
        REPO, tree, ignore=shutil.ignore_patterns(".git", ".venv*", "*.egg-info", "build", "dist", "__pycache__",
                                                  ".*cache", "site")
    )
    dist = tmp_path / "dist"
    built = run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(tree)], timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels, sdists = list(dist.glob("mitm407-*.whl")), list(dist.glob("mitm407-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    checked = run([sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)], timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    installed = run([str(venv / "bin" / "pip"), "install", "-q", str(wheels[0]), "pytest", "requests"], timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    mitm407 = str(venv / "bin" / "mitm407")
    elsewhere = tmp_path / "elsewhere"  # no checkout around: everything comes from the package
    elsewhere.mkdir()
    check = run([mitm407, "check", "default", "corp-basic"], cwd=elsewhere)
    assert check.returncode == 0, check.stderr
    assert f"{venv}/lib/" in check.stdout and "mitm407/scenarios/default.yaml: ok" in check.stdout
    for command in ("capture", "web", "ctl"):
        assert run([mitm407, command, "--help"], cwd=elsewhere).returncode == 0, command
    page = run([mitm407, "scenarios", "digest"], cwd=elsewhere)
    assert "mitm407 run digest" in page.stdout and "addons/proxyauth.py" not in page.stdout
    port = free_port()
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 -- closed below
    proc = subprocess.Popen(  # no --listen-host: mitm407 run binds 127.0.0.1 by itself
        [mitm407, "run", "-p", str(port), "--set", f"confdir={tmp_path / 'conf'}"],
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
    assert f"proxy listening at 127.0.0.1:{port}." in output
    # A throwaway project that only installed mitm407 uses its pytest plugin.
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_client.py").write_text(f"ORIGIN = {origin.url('/plugin')!r}\n" + PLUGIN_USER_TEST)
    used = run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
               timeout=180)
    assert used.returncode == 0 and "1 passed" in used.stdout, used.stdout[-3000:]
