"""``mitm407 scenarios``: the list, one scenario's documentation, and the shape of every header."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from mitm407.cli.scenarios import for_installed_package, header_comment, in_checkout, shipped_scenarios
from mitm407.faults.registry import FAULTS
from mitm407.scenario.load import load_scenario
from procs import REPO, mitm407_cli

FOUNDATION = {"default", "corp-basic", "htpasswd"}  # documented before the fault library existed


@pytest.mark.e2e  # starts a process
def test_list_names_every_shipped_scenario_with_its_description():
    result = mitm407_cli("scenarios")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == sorted(shipped_scenarios())
    expected = r"^expired-credentials +Credentials expire after 5 accepted requests per user \(fault expire_after\)\.$"
    assert re.search(expected, result.stdout, re.M)


@pytest.mark.e2e  # starts a process
def test_show_prints_the_whole_header_comment():
    result = mitm407_cli("scenarios", "close-after-407")
    assert result.returncode == 0, result.stderr
    path = shipped_scenarios()["close-after-407"]
    assert result.stdout == header_comment(path.read_text()) + f"\n\nFile: {path}\n"
    assert result.stdout.startswith("close-after-407: the proxy closes the connection after every 407.\n")
    assert "curl/curl#6828" in result.stdout and "version: 1" not in result.stdout


@pytest.mark.e2e  # starts a process
def test_unknown_scenario_name():
    result = mitm407_cli("scenarios", "close-after-408")
    assert result.returncode == 1
    assert result.stderr == "mitm407: no shipped scenario 'close-after-408' (did you mean 'close-after-407'?)\n"


def test_fault_scenarios_document_bug_reference_run_and_result():
    library = {name: path for name, path in shipped_scenarios().items() if name not in FOUNDATION}
    assert len(library) >= 15
    for name, path in library.items():
        header = header_comment(path.read_text())
        assert header.startswith(f"{name}: "), name
        for part in ("Simulates:", "Reproduces", "Try it:", "Expected:", "mitmdump -s addons/proxyauth.py"):
            assert part in header, (name, part)
        assert "confirmed" in header or "reported" in header or "checked" in header, name


def test_every_fault_is_used_by_a_shipped_scenario():
    used = {spec.name for path in shipped_scenarios().values() for spec in load_scenario(path).faults}
    used |= {
        spec.name
        for path in shipped_scenarios().values()
        for rule in load_scenario(path).rules.rules
        for spec in rule.faults
    }
    assert used == set(FAULTS)



def test_installed_header_shows_mitm407_run_not_a_checkout_path():
    text = (
        "Try it:\n  mitmdump -s addons/proxyauth.py --set scenario=digest\n"
        "  mitmdump -s addons/proxyauth.py --set scenario=teach-proxy --set hop_name=corp-proxy\n"
        "  mitmdump -s addons/proxyauth.py --set scenario=scenarios/corp-basic.yaml -p 3128\n"
        "  (what `mitmdump -s addons/proxyauth.py` uses)"
    )
    assert for_installed_package(text) == (
        "Try it:\n  mitm407 run digest\n  mitm407 run teach-proxy --set hop_name=corp-proxy\n"
        "  mitm407 run corp-basic -p 3128\n  (what `mitm407 run` uses)"
    )
    assert all(in_checkout(path) for path in shipped_scenarios().values())  # this checkout keeps its commands


@pytest.mark.e2e  # runs the mitm407 command
def test_closed_pipe_exits_quietly():
    """``mitm407 scenarios | head -1``: no BrokenPipeError traceback, whichever write meets the closed pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: every write fails with EPIPE
    try:
        writer = subprocess.run(
            [sys.executable, "-m", "mitm407", "scenarios"], stdout=write_end, stderr=subprocess.PIPE, timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO / "addons")},
        )
    finally:
        os.close(write_end)
    assert writer.stderr == b"" and writer.returncode == 141
