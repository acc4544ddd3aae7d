"""Scenario inputs the property tests found crashing the loader: now each is one located problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from mitm407.core.problems import ScenarioError
from mitm407.scenario.load import parse_scenario


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "s.yaml", tmp_path, env={})
    return [str(p) for p in e.value.problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: !!int abc\n",
         "s.yaml:1:10: 'version' must be an integer, got 'abc' marked as an integer, which it is not"),
        ("version: 1\ncache: {max_entries: !!bool 80}\n",
         "s.yaml:2:22: 'max_entries' must be an integer, got '80' marked as true/false, which it is not"),
        ("version: 1\ncache: {ttl: !!float x}\n",
         "s.yaml:2:14: 'ttl' must be a number, got 'x' marked as a number, which it is not"),
        ("version: !!python/object:os.system 1\n",
         "s.yaml:1:10: 'version' must be an integer, got '1' marked as tag:yaml.org,2002:python/object:os.system, "
         "which it is not"),
    ],
)
def test_explicit_tags_that_do_not_construct(tmp_path, text, expected):
    assert problems(text + "users: {a: b}\n", tmp_path) == [expected]


@pytest.mark.parametrize("name", ["a\\0b", "\\ud800"])
def test_unusable_file_names(tmp_path, name):
    """A NUL or a lone surrogate in a file name: an error naming it safely, not a ValueError."""
    shown = ascii(str(tmp_path / name.encode().decode("unicode_escape")))
    assert problems(f'version: 1\nhtpasswd: "{name}"\n', tmp_path) == [
        f"s.yaml:2:11: cannot read htpasswd file {shown}: not a valid file name"
    ]
    assert problems(f'version: 1\nusers: {{a: "file:{name}"}}\n', tmp_path) == [
        f"s.yaml:2:12: cannot read password file {shown}: not a valid file name"
    ]
