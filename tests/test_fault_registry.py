"""The fault registry is the one source of truth: every fault's parser, behaviour, settings keys and doc."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import pytest

import mitm407.faults
from mitm407.cli.scenarios import shipped_scenarios
from mitm407.core.problems import Problems
from mitm407.core.yamlnodes import Mapping, Reader, compose
from mitm407.faults import registry
from mitm407.faults.base import BuildContext
from mitm407.faults.engine import FaultEngine
from mitm407.faults.registry import FAULTS
from mitm407.scenario.load import load_scenario

REPO = Path(__file__).resolve().parent.parent
SHARED = {"__init__", "base", "registry", "engine"}  # the modules that define no fault


def test_every_fault_module_is_registered():
    """A fault module left out of ``FAULT_MODULES`` would be silently unknown to scenarios."""
    modules = {m.name for m in pkgutil.iter_modules(mitm407.faults.__path__)} - SHARED
    assert modules == {m.__name__.rpartition(".")[2] for m in registry.FAULT_MODULES}
    names = [kind.name for module in registry.FAULT_MODULES for kind in module.KINDS]
    assert len(names) == len(set(names)) == len(FAULTS) == 14


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_each_fault_parses_builds_and_documents_itself(name, monkeypatch):
    kind = FAULTS[name]
    assert kind.name == name
    assert len(kind.doc) > 150 and "Reproduces" in kind.doc, "say which real proxy behaviour it reproduces"
    problems = Problems()
    seen: list[Mapping] = []
    real_mapping = Reader.mapping

    def recording(self, node, what):
        m = real_mapping(self, node, what)
        if m is not None:
            seen.append(m)
        return m

    monkeypatch.setattr(Reader, "mapping", recording)
    settings = kind.parse(Reader("s.yaml", problems), compose("{not_a_key: 1}", "s.yaml"))
    # the keys the parser reads are exactly the keys the reference documents
    assert seen[0].known == {k.name for k in kind.keys}
    assert any("unknown key 'not_a_key'" in p.message for p in problems.items)
    fault = kind.build(settings, BuildContext("realm", {}))
    assert fault.name == name and callable(fault.decide)


def test_every_shipped_scenario_builds_its_faults():
    with_faults = 0
    for path in shipped_scenarios().values():
        scenario = load_scenario(path)
        specs = [*scenario.faults, *(spec for rule in scenario.rules.rules for spec in rule.faults)]
        assert {spec.name for spec in specs} <= set(FAULTS), path
        engine = FaultEngine(scenario)
        assert engine.active == bool(specs)
        with_faults += bool(specs)
    assert with_faults >= 15


def test_docs_fault_reference_is_the_registrys():
    """docs/faults.md includes ``registry.reference()`` (docs/_snippets/fault-reference.md, written by gendocs)."""
    assert '--8<-- "fault-reference.md"' in (REPO / "docs" / "faults.md").read_text(encoding="utf-8")
    snippet = (REPO / "docs" / "_snippets" / "fault-reference.md").read_text(encoding="utf-8")
    assert snippet.endswith(registry.reference())
