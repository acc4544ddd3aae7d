"""Scenario inputs the property tests found crashing the loader: now each is one located problem."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mitm407.core.problems import ScenarioError
from mitm407.scenario.load import load_scenario, parse_scenario
from procs import mitm407_cli
from specialfiles import KINDS, special_file


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


# -- limits: deep, large, looping, not a regular file ---------------------------------------


def deep_flow(levels: int) -> str:
    return "version: 1\nusers: {a: b}\nrules: " + "[" * levels + "]" * levels + "\n"


def deep_block(levels: int) -> str:
    return "version: 1\nusers: {a: b}\nrules:\n" + "".join("  " * i + "- \n" for i in range(levels))


@pytest.mark.parametrize("make", [deep_flow, deep_block], ids=["flow", "block"])
@pytest.mark.parametrize("levels", [33, 500, 20_000])
def test_deep_nesting_is_one_located_problem(tmp_path, make, levels):
    """~500 levels used to exhaust the stack: a RecursionError traceback from ``check``, a dead reload watcher."""
    out = problems(make(levels), tmp_path)
    line = 3 if make is deep_flow else 3 + 32  # where the 33rd level starts
    assert len(out) == 1 and out[0].startswith(f"s.yaml:{line}:") and "nested more than 32 levels deep" in out[0]
    assert "(at most 32 levels and 500000 values)" in out[0]


def test_nesting_at_the_limit_loads(tmp_path):
    text = "version: 1\nusers: {a: b}\ndefault: none\nrules:\n  - match: {path: " + "[" * 28 + "]" * 28 + "}\n"
    out = problems(text, tmp_path)  # 32 levels is allowed: whatever is wrong, it is not the depth
    assert not any("nested" in line for line in out)


def test_alias_expansion_bomb_and_cycle(tmp_path):
    bomb = "version: 1\nusers: {a: b}\nl0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9)
    )
    out = problems(bomb, tmp_path)
    assert len(out) == 1 and "YAML document too large: more than 500000 values (aliases expanded)" in out[0]
    assert problems("version: 1\nusers: {a: b}\nrules: &r [*r]\n", tmp_path) == [
        "s.yaml:3:12: YAML document too large: alias *r refers to a node that contains it "
        "(at most 32 levels and 500000 values)"
    ]


def test_too_many_rules(tmp_path):
    rules = "".join("  - {match: {path: /x}, auth: none}\n" for _ in range(1001))
    assert problems(f"version: 1\nusers: {{a: b}}\nrules:\n{rules}", tmp_path) == [
        "s.yaml:4:3: more than 1000 rules (1001) (rules are tried in order on every request: "
        "group hosts and paths in fewer rules)"
    ]


def test_scenario_file_over_the_size_cap(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("version: 1\nusers: {a: b}\n" + "#" * (1024 * 1024) + "\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    assert [str(p) for p in e.value.problems] == [
        f"{path}:1:1: cannot read scenario file: {path.stat().st_size} bytes, larger than the limit of 1 MiB"
    ]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", KINDS)
def test_scenario_names_only_regular_files(tmp_path, kind):
    """A FIFO would be waited on for ever, /dev/zero read for ever: both are refused at once."""
    target, what = special_file(tmp_path, kind)
    shown_path = tmp_path / target
    assert problems(f'version: 1\nusers: {{a: "file:{target}"}}\n', tmp_path) == [
        f"s.yaml:2:12: cannot read password file {shown_path}: {what}"
    ]
    assert problems(f"version: 1\nhtpasswd: [{target}]\n", tmp_path) == [
        f"s.yaml:2:12: cannot read htpasswd file {shown_path}: {what}"
    ]
    assert problems(f"version: 1\nrealm: R\nhtdigest: {target}\n", tmp_path) == [
        f"s.yaml:3:11: cannot read htdigest file {shown_path}: {what}"
    ]
    with pytest.raises(ScenarioError) as e:
        load_scenario(shown_path)
    assert [str(p) for p in e.value.problems] == [f"{shown_path}:1:1: cannot read scenario file: {what}"]


def test_user_files_over_their_size_cap(tmp_path):
    with open(tmp_path / "huge.htpasswd", "wb") as f:
        f.truncate(256 * 1024 * 1024 + 1)  # sparse: refused by its size, before any read
    (tmp_path / "long.secret").write_text("x" * (64 * 1024 + 1))
    assert problems("version: 1\nhtpasswd: huge.htpasswd\nusers: {a: file:long.secret}\n", tmp_path) == [
        f"s.yaml:2:11: cannot read htpasswd file {tmp_path / 'huge.htpasswd'}: 268435457 bytes, "
        "larger than the limit of 256 MiB",
        f"s.yaml:3:12: cannot read password file {tmp_path / 'long.secret'}: 65537 bytes, "
        "larger than the limit of 64 KiB",
    ]


def test_file_that_is_not_utf8(tmp_path):
    (tmp_path / "latin1.secret").write_bytes(b"p\xe4ss\n")
    assert problems("version: 1\nusers: {a: file:latin1.secret}\n", tmp_path) == [
        f"s.yaml:2:12: cannot read password file {tmp_path / 'latin1.secret'}: not UTF-8 text (byte 2)"
    ]


@pytest.mark.e2e  # runs mitm407 check
@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", [deep_flow(500), deep_block(500)], ids=["flow", "block"])
def test_check_on_a_deep_file_prints_one_line(tmp_path, text):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    result = mitm407_cli("check", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "nested more than 32 levels deep" in result.stderr


# -- every credential format verifiable here --------------------------------------------

BCRYPT = "$2b$04$" + "a" * 53


def test_bcrypt_hashes_need_bcrypt_importable(tmp_path, monkeypatch):
    (tmp_path / "h").write_text(f"# users\nann:{BCRYPT}\nbob:{BCRYPT}\n")
    monkeypatch.setitem(sys.modules, "bcrypt", None)  # import bcrypt -> ImportError
    assert problems("version: 1\nhtpasswd: h\n", tmp_path) == [
        f"s.yaml:2:11: 2 user(s) have a bcrypt hash (first: 'ann', {tmp_path / 'h'}:2), and the Python package "
        "bcrypt cannot be imported here to verify them (pip install bcrypt)"
    ]


@pytest.mark.parametrize("schemes", ["[basic, ntlm]", "[negotiate]"])
def test_ntlm_and_negotiate_need_pyspnego_importable(tmp_path, monkeypatch, schemes):
    for name in [m for m in sys.modules if m == "spnego" or m.startswith(("spnego.", "mitm407.schemes."))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "spnego", None)
    out = problems(f"version: 1\nusers: {{a: b}}\nschemes: {schemes}\n", tmp_path)
    scheme = schemes.strip("[]").split(", ")[-1]
    assert len(out) == 1 and out[0].startswith("s.yaml:3:")
    assert f"scheme '{scheme}' needs the Python package pyspnego" in out[0]
    assert out[0].endswith("(pip install pyspnego)")
