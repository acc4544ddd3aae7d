"""``mitm407 scenarios``: the list, one scenario's documentation, and the shape of every header."""

from __future__ import annotations

import re

from mitm407.cli.scenarios import header_comment, shipped_scenarios
from mitm407.faults.engine import FAULT_TYPES
from mitm407.scenario.load import load_scenario
from procs import mitm407_cli

FOUNDATION = {"default", "corp-basic", "htpasswd"}  # documented before the fault library existed


def test_list_names_every_shipped_scenario_with_its_description():
    result = mitm407_cli("scenarios")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == sorted(shipped_scenarios())
    expected = r"^expired-credentials +Credentials expire after 5 accepted requests per user \(fault expire_after\)\.$"
    assert re.search(expected, result.stdout, re.M)


def test_show_prints_the_whole_header_comment():
    result = mitm407_cli("scenarios", "close-after-407")
    assert result.returncode == 0, result.stderr
    path = shipped_scenarios()["close-after-407"]
    assert result.stdout == header_comment(path.read_text()) + f"\n\nFile: {path}\n"
    assert result.stdout.startswith("close-after-407: the proxy closes the connection after every 407.\n")
    assert "curl/curl#6828" in result.stdout and "version: 1" not in result.stdout


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
    assert used == set(FAULT_TYPES)
