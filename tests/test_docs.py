"""The docs cannot drift from the code: generated pages are current, the scenario key table matches the loader.

``tools/gendocs.py`` writes the reference pages (options, command line, hop-log
fields, scenario keys, shipped scenarios, the compatibility snippet); here they
are regenerated into a temporary folder and compared with the committed ones.
The scenario key table is checked against the loader's behaviour: every
documented key is accepted with its example value, and in every section the
keys the loader asks for are exactly the documented ones (so a key added to the
loader without a row here fails, and so does a row for a key the loader lost).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mitm407.core import yamlnodes
from mitm407.core.problems import ScenarioError
from mitm407.scenario.load import parse_scenario

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def load_gendocs():
    spec = importlib.util.spec_from_file_location("gendocs", REPO / "tools" / "gendocs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gendocs"] = module
    spec.loader.exec_module(module)
    return module


gendocs = load_gendocs()


@pytest.mark.parametrize("page", sorted(gendocs.PAGES))
def test_generated_page_is_current(page: str, tmp_path: Path):
    gendocs.write_pages(tmp_path)
    fresh = (tmp_path / page).read_text(encoding="utf-8")
    committed = DOCS / page
    assert committed.exists(), f"docs/{page} is missing: run `make docs` (tools/gendocs.py)"
    assert committed.read_text(encoding="utf-8") == fresh, f"docs/{page} is stale: run `make docs` and commit it"


def test_every_option_and_command_is_on_its_page():
    """Belt and braces for the generator: the names really come out of the code."""
    from mitm407.cli import COMMANDS
    from mitm407.cli.options import addon_options

    options = (DOCS / "reference/options.md").read_text(encoding="utf-8")
    assert all(f"| `{name}` |" in options for name, *_ in addon_options())
    cli = (DOCS / "reference/cli.md").read_text(encoding="utf-8")
    assert all(f"\n## {name}\n" in cli for name in COMMANDS)


# -- the scenario key table against the loader --------------------------------

MD5_HA1 = hashlib.md5(b"alice:mitm407:alice-pw").hexdigest()


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    """Files the examples name (htpasswd, htdigest) beside the scenario."""
    (tmp_path / "users.htpasswd").write_text("sha-user:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n", encoding="utf-8")
    (tmp_path / "users.htdigest").write_text(f"dora:mitm407:{MD5_HA1}\n", encoding="utf-8")
    return tmp_path


def scenario_with(section: str, entries: dict[str, Any]) -> dict[str, Any]:
    """A minimal valid scenario with ``entries`` put into ``section`` (as named in gendocs.KEYS)."""
    doc: dict[str, Any] = {"version": 1, "users": {"alice": "alice-pw"}}
    if section == "":
        doc.update(entries)
    elif section == "users.NAME":
        doc["users"]["alice"] = {"password": "alice-pw", **entries}
    elif section == "rules[]":
        doc["rules"] = [{"auth": "none", **entries}]
    elif section == "rules[].match":
        doc["rules"] = [{"auth": "none", "match": entries}]
    elif section.startswith("response."):
        doc["response"] = {section.split(".", 1)[1]: entries}
    else:
        doc[section] = entries
    return doc


def load(doc: dict[str, Any], base: Path):
    return parse_scenario(yaml.safe_dump(doc, sort_keys=False), str(base / "s.yaml"), base, env={})


@pytest.mark.parametrize("key", gendocs.KEYS, ids=lambda k: f"{k.section or 'top'}.{k.name}")
def test_documented_key_is_accepted(key, scenario_dir: Path):
    load(scenario_with(key.section, {key.name: key.example}), scenario_dir)


PROBE = "zz_undocumented_key"
# Every documented section, plus the override mappings of ``response:`` (the shape keys again).
SECTIONS = sorted({k.section for k in gendocs.KEYS} | {"response.connect", "response.bad_credentials"})


def documented(section: str) -> set[str]:
    if section.startswith("response."):
        return {k.name for k in gendocs.RESPONSE_SHAPE}
    return {k.name for k in gendocs.KEYS if k.section == section}


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s or "top")
def test_loader_reads_exactly_the_documented_keys(section: str, scenario_dir: Path, monkeypatch):
    """An unknown key is rejected, and the keys the loader asked that mapping for are the documented ones."""
    asked: list[set[str]] = []
    finish = yamlnodes.Mapping.finish

    def spy(self, extra_known=()):
        if PROBE in self.entries:
            asked.append(set(self.known) | set(extra_known))
        return finish(self, extra_known)

    monkeypatch.setattr(yamlnodes.Mapping, "finish", spy)
    with pytest.raises(ScenarioError) as error:
        load(scenario_with(section, {PROBE: 1}), scenario_dir)
    assert f"unknown key '{PROBE}'" in str(error.value)
    assert len(asked) == 1, f"the probe key was seen in {len(asked)} mappings"
    assert asked[0] == documented(section), (
        f"section {section or 'top'!r}: the loader reads {sorted(asked[0])}, "
        f"tools/gendocs.py documents {sorted(documented(section))}"
    )


def test_negotiate_takes_the_ntlm_keys(scenario_dir: Path):
    ntlm = {k.name: k.example for k in gendocs.KEYS if k.section == "ntlm"}
    load(scenario_with("negotiate", ntlm), scenario_dir)


# -- README ---------------------------------------------------------------------

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_is_short_and_starts_with_the_two_commands():
    assert len(README.splitlines()) <= 200
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    assert README.index("make demo") < 200  # at the very top


def test_readme_links_into_the_site_resolve():
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", README)
    assert links, "the README links into docs/"
    missing = [link for link in links if not (REPO / link).exists()]
    assert not missing


@pytest.mark.parametrize("path", ["README.md", *sorted(str(p.relative_to(REPO)) for p in DOCS.rglob("*.md"))])
def test_no_reference_to_files_users_do_not_have(path: str):
    """FACTS, DESIGN and CLIENT-BUGS are the developers' notes, not shipped."""
    text = (REPO / path).read_text(encoding="utf-8")
    assert not re.search(r"\b(see FACTS|FACTS\.md|DESIGN\.md|CLIENT-BUGS\.md)", text)
