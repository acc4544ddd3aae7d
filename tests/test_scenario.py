"""Scenario loading and validation: exact file:line:col for each problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mitm407.core.problems import ScenarioError
from mitm407.core.rules import Outcome
from mitm407.scenario.load import load_scenario, repo_scenario_dir, resolve_scenario_path
from procs import mitm407_cli

SCENARIOS = sorted(repo_scenario_dir().glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    """A scenario file; ``version: 1`` (required) is added last when missing, so line numbers stay."""
    text = textwrap.dedent(text)
    if text and "version:" not in text:
        text += "version: 1\n"
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ScenarioError) as e:
        load_scenario(path, env=env or {})
    return [str(p) for p in e.value.problems]


@pytest.mark.e2e  # starts a process
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_passes_check(path):
    result = mitm407_cli("check", str(path))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_shipped_scenarios_start_with_a_comment_block():
    for path in SCENARIOS:
        assert path.read_text().startswith("# "), path


def test_default_scenario_resolves_without_option():
    assert resolve_scenario_path("") == repo_scenario_dir() / "default.yaml"
    assert resolve_scenario_path("default") == repo_scenario_dir() / "default.yaml"
    scenario = load_scenario(resolve_scenario_path(""))
    assert scenario.schemes == ("basic",) and "demo" in scenario.users


def test_unknown_keys_with_did_you_mean(tmp_path):
    path = write(tmp_path, """\
        version: 1
        users: {a: b}
        realmm: X
        rules:
          - match: {hots: "*.x"}
            auth: none
        """)
    assert problems(path) == [
        f"{path}:3:1: unknown key 'realmm' in the scenario (did you mean 'realm'?)",
        f"{path}:5:13: unknown key 'hots' in 'match' (did you mean 'host'?)",
    ]


def test_wrong_types(tmp_path):
    path = write(tmp_path, """\
        version: 1
        users: [a, b]
        rules: {a: 1}
        cache: {ttl: soon}
        """)
    assert problems(path) == [
        f"{path}:2:8: 'users' must be a mapping, got a list",
        f"{path}:3:8: 'rules' must be a list, got a mapping",
        f"{path}:4:14: 'ttl' must be a number, got a string",
    ]


def test_duplicate_users_in_yaml_and_across_htpasswd(tmp_path):
    (tmp_path / "u.htpasswd").write_text("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    path = write(tmp_path, """\
        users:
          alice: one
          alice: two
        htpasswd: u.htpasswd
        """)
    out = problems(path)
    assert out[0] == f"{path}:3:3: duplicate key 'alice' in 'users' (first defined on line 2)"
    assert out[1].startswith(f"{path}:4:11: user 'alice' is defined twice")


def test_missing_htpasswd_and_undefined_env(tmp_path):
    path = write(tmp_path, """\
        users:
          bob: env:BOB_PASSWORD_UNSET
          carol: file:carol.secret
        htpasswd: nowhere.htpasswd
        """)
    out = problems(path)
    assert out[0] == f"{path}:2:8: environment variable BOB_PASSWORD_UNSET is not set"
    assert out[1].startswith(f"{path}:3:10: cannot read password file")
    assert out[2].startswith(f"{path}:4:11: cannot read htpasswd file")


def test_env_and_file_passwords_resolve(tmp_path):
    (tmp_path / "carol.secret").write_text("from-file\n")
    path = write(tmp_path, """\
        users:
          bob: {password: "env:BOB_PW"}
          carol: file:carol.secret
        """)
    scenario = load_scenario(path, env={"BOB_PW": "from-env"})
    assert scenario.users["bob"].secret.verify("from-env")
    assert scenario.users["carol"].secret.verify("from-file")
    assert str(tmp_path / "carol.secret") in scenario.files


def test_rules_compile_and_bad_values(tmp_path):
    path = write(tmp_path, """\
        users: {a: b}
        rules:
          - match: {host: "*.intranet.example", port: [80, 8080], method: get}
            auth: none
          - match: {client: "10.0.0.0/8", connect: true}
            auth: deny
          - match: {path_regex: "(", port: 0}
            auth: required
        default: none
        """)
    out = problems(path)
    assert out == [
        f"{path}:7:25: bad path_regex: missing ), unterminated subpattern at position 0",
        f"{path}:7:36: 'port' must be at least 1, got 0",
    ]


def test_yaml_syntax_error_is_located(tmp_path):
    path = write(tmp_path, "version: 1\nusers:\n  a: [b\n")
    out = problems(path)
    assert len(out) == 1 and out[0].startswith(f"{path}:4:1: YAML syntax error")


def test_unsupported_version_and_empty_file(tmp_path):
    assert problems(write(tmp_path, "version: 2\nusers: {a: b}\n")) == [
        f"{tmp_path / 's.yaml'}:1:10: unsupported scenario version 2 (this mitm407 reads version 1)"
    ]
    assert problems(write(tmp_path, "", "e.yaml")) == [f"{tmp_path / 'e.yaml'}:1:1: scenario file is empty"]


def test_auth_required_without_users(tmp_path):
    path = write(tmp_path, "rules:\n  - match: {path: /x}\n    auth: none\n")
    assert problems(path) == [
        f"{path}:1:1: the scenario requires authentication but defines no users "
        "(add 'users:', 'htpasswd:' or 'htdigest:')"
    ]


def test_no_users_needed_when_nothing_requires_auth(tmp_path):
    scenario = load_scenario(write(tmp_path, "default: none\n"))
    assert scenario.rules.default is Outcome.NONE and not scenario.users


def test_user_name_with_colon_rejected(tmp_path):
    path = write(tmp_path, 'users:\n  "a:b": pw\n')
    assert problems(path) == [f"{path}:2:3: user name 'a:b' contains ':' (RFC 7617 forbids ':' in Basic user names)"]


@pytest.mark.e2e  # starts a process
def test_check_command_output_and_exit_code(tmp_path):
    bad = write(tmp_path, "users: {a: b}\nschemes: [basic, basci]\n", "bad.yaml")
    good = write(tmp_path, "users: {a: b}\n", "good.yaml")
    result = mitm407_cli("check", str(good), str(bad))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"{bad}:2:18: unknown value 'basci' for 'schemes' item (did you mean 'basic'?)"
    ]
    assert f"{good}: ok" in result.stdout
    assert "Traceback" not in result.stderr


# -- validation that was silent ------------------------------------------------------


def test_version_is_required(tmp_path):
    missing = tmp_path / "m.yaml"
    missing.write_text("users: {a: b}\n")
    assert problems(missing) == [
        f"{missing}:1:1: the scenario needs 'version: 1' (the version of the scenario format it is written for)"
    ]
    empty = tmp_path / "e.yaml"
    empty.write_text("version:\nusers: {a: b}\n")
    assert problems(empty)[0].startswith(f"{empty}:1:9: the scenario needs 'version: 1'")


def test_schemes_must_be_a_list(tmp_path):
    path = write(tmp_path, "users: {a: b}\nschemes: basic\n")
    assert problems(path) == [
        f"{path}:2:10: 'schemes' must be a list (e.g. schemes: [basic] or schemes: [digest, basic])"
    ]


@pytest.mark.parametrize(
    ("users", "keys"),
    [("users: {}\n", "'users'"), ("htpasswd: empty.htpasswd\n", "'htpasswd'"),
     ("users: {}\nhtdigest: empty.htpasswd\n", "'users' and 'htdigest'")],
)
def test_required_auth_with_no_user_at_all(tmp_path, users, keys):
    (tmp_path / "empty.htpasswd").write_text("# nobody yet\n")
    path = write(tmp_path, users + "rules:\n  - match: {path: /x}\n    auth: required\ndefault: none\n")
    assert problems(path) == [
        f"{path}:1:1: the scenario requires authentication but its {keys} define no users "
        "(nobody could ever authenticate: add a user, or set 'default: none' / 'auth: none')"
    ]


def test_no_users_error_is_not_added_to_a_users_error(tmp_path):
    path = write(tmp_path, 'users: {a: "env:UNSET_FOR_TEST"}\n')
    assert problems(path) == [f"{path}:1:12: environment variable UNSET_FOR_TEST is not set"]


@pytest.mark.e2e  # runs mitm407 check
def test_check_prints_one_line_per_problem_and_escapes_control_characters(tmp_path):
    path = write(tmp_path, 'users: {a: b}\n"bad\\u001b[31mkey\\nx": 1\nschemes: basic\n')
    result = mitm407_cli("check", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{path}:2:1: unknown key 'bad\\x1b[31mkey\\nx' in the scenario (expected one of: basic, cache, default, "
        "description, digest, faults, htdigest, htpasswd, login_hint, name, negotiate, ntlm, pac, portal, realm, "
        "response, rules, schemes, socks5, users, version)",
        f"{path}:3:10: 'schemes' must be a list (e.g. schemes: [basic] or schemes: [digest, basic])",
    ]


def test_many_problems_are_counted_past_a_hundred(tmp_path):
    (tmp_path / "bad.htpasswd").write_text("".join(f"user{i}\n" for i in range(150)))
    path = write(tmp_path, "htpasswd: bad.htpasswd\n")
    out = problems(path)
    assert len(out) == 101 and out[-1].endswith("... and 50 more problems")
