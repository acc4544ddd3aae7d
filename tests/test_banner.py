"""describe_faults: the start-up banner lines naming a scenario's active faults (pure function)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mitm407.proxy.banner import describe_faults, describe_switch
from mitm407.scenario.load import load_scenario, parse_scenario, resolve_scenario_path

HEAD = "version: 1\nname: t\nrealm: R\nusers: {u: p}\nschemes: [basic]\n"


def banner(body: str) -> str:
    return describe_faults(parse_scenario(HEAD + body, "t.yaml", Path(".")))


def test_no_faults_says_so():
    assert banner("") == "scenario 't': no faults (a well-behaved proxy)"


def test_top_level_and_rule_faults_with_their_lines_and_chosen_settings():
    text = banner(
        "faults:\n"
        "  - always_407\n"
        "  - lockout: {failures: 5, seconds: 60, status: 407}\n"
        "rules:\n"
        "  - name: tunnels\n"
        "    match: {connect: true}\n"
        "    auth: required\n"
        "    faults:\n"
        "      - drop: {at: after_connect, probability: 0.5, seed: 3}\n"
    )
    assert text.splitlines() == [
        "scenario 't': 3 faults active",
        "  - all requests: always_407 (line 7)",
        "  - all requests: lockout: failures=5, status=407 (line 8)",
        "  - rule 1 'tunnels' (line 10): drop: at=after_connect, trigger.probability=0.5, trigger.seed=3 (line 14)",
    ]


def test_rotated_passwords_are_counted_never_shown():
    text = banner("faults:\n  - rotate: {user: u, passwords: [first-secret, second-secret], period: 30}\n")
    assert "passwords=<2 hidden>" in text
    assert "secret" not in text.replace("hidden", "")
    assert "first" not in text and "second" not in text


@pytest.mark.parametrize("name", ["flaky-proxy", "tunnel-reset", "password-rotation", "default", "leaky-proxy"])
def test_every_shipped_scenario_gets_a_banner(name: str):
    scenario = load_scenario(resolve_scenario_path(name))
    text = describe_faults(scenario)
    assert text.startswith(f"scenario '{scenario.name}': ")
    count = len(scenario.faults) + sum(len(rule.faults) for rule in scenario.rules.rules)
    assert len(text.splitlines()) == (count + 1 if count else 1)


def test_a_switch_names_both_scenarios_how_and_the_faults_now_active():
    before = load_scenario(resolve_scenario_path("default"))
    after = load_scenario(resolve_scenario_path("close-after-407"))
    text = describe_switch(before, after, "option set in mitmweb or the console")
    assert text.splitlines() == [
        f"switched scenario 'default' -> 'close-after-407' from {after.path} (option set in mitmweb or the console)",
        "scenario 'close-after-407': 1 fault active",
        f"  - all requests: close_on_407 (line {after.faults[0].line})",
    ]
    same = describe_switch(after, after, "file changed on disk")
    assert same.splitlines()[0] == f"reloaded scenario 'close-after-407' from {after.path} (file changed on disk)"
