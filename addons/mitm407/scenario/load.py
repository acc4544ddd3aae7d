"""Scenario files: YAML in, one frozen, validated ``Scenario`` out.

Everything a request needs is decided here, once per load: users resolved
(``env:``/``file:``/htpasswd), rules compiled, scheme options checked. The hot
path only reads the result. Errors are collected, each with ``file:line:col``,
and raised together as one ``ScenarioError``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mitm407.core.credentials import Secret, User, parse_htdigest, parse_htpasswd, resolve_password
from mitm407.core.problems import Problems, ScenarioError
from mitm407.core.rules import OUTCOMES, Outcome, Rule, Rules, parse_rules
from mitm407.core.shape import ResponseShapes, parse_response
from mitm407.core.yamlnodes import Mapping, Reader, compose
from mitm407.faults import registry as faults_module
from mitm407.schemes import SCHEME_NAMES, spec_for

SCENARIO_VERSION = 1
DEFAULT_SCENARIO = "default"


@dataclass(frozen=True)
class CacheConfig:
    ttl: float = 300.0  # seconds a verified credential stays trusted
    max_entries: int = 100_000


@dataclass(frozen=True)
class Scenario:
    path: str
    name: str
    description: str
    realm: str
    users: MappingABC[str, User]
    schemes: tuple[str, ...]
    scheme_options: MappingABC[str, Any]
    rules: Rules
    faults: tuple[faults_module.FaultSpec, ...] = ()
    login_hint: str = ""
    cache: CacheConfig = field(default_factory=CacheConfig)
    files: tuple[str, ...] = ()  # every file read: the reload watcher stats them
    response: ResponseShapes | None = None  # exact shape of refusals (``response:``, see shape.py)

    def rule_list(self) -> tuple[Rule, ...]:
        return self.rules.rules


def repo_scenario_dir() -> Path:
    """``scenarios/`` beside ``addons/`` in a checkout; inside the package when installed."""
    here = Path(__file__).resolve().parent.parent
    checkout = here.parent.parent / "scenarios"
    if checkout.is_dir():
        return checkout
    return here / "scenarios"


def resolve_scenario_path(value: str) -> Path:
    """The ``scenario`` option: empty = the default, a bare name = a shipped scenario."""
    if not value:
        value = DEFAULT_SCENARIO
    path = Path(value).expanduser()
    if path.suffix not in (".yaml", ".yml") and os.sep not in value and not path.exists():
        return repo_scenario_dir() / f"{value}.yaml"
    return path


def load_scenario(path: str | os.PathLike[str], env: MappingABC[str, str] | None = None) -> Scenario:
    """Read and validate a scenario file; raises ScenarioError listing every problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([_problem(file, "scenario file not found")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError([_problem(file, f"cannot read scenario file: {e}")]) from None
    return parse_scenario(text, file, Path(path).resolve().parent, env)


def _problem(file: str, message: str) -> Any:
    problems = Problems()
    problems.add(file, 1, 1, message)
    return problems.items[0]


def parse_scenario(
    text: str, file: str, base: Path, env: MappingABC[str, str] | None = None
) -> Scenario:
    problems = Problems()
    reader = Reader(file, problems)
    root = compose(text, file)
    if root is None:
        raise ScenarioError([_problem(file, "scenario file is empty")])
    top = reader.mapping(root, "the scenario")
    if top is None:
        problems.raise_if_any()
        raise AssertionError("unreachable")

    version = top.integer("version", SCENARIO_VERSION)
    if version != SCENARIO_VERSION:
        reader.error(
            top.get("version") or root, f"unsupported scenario version {version}", "this mitm407 reads version 1"
        )
    files = [str(Path(file).resolve())]
    realm = top.text("realm", "mitm407") or "mitm407"
    users = _read_users(reader, top, base, env, files, realm)
    schemes = top.choice_list("schemes", SCHEME_NAMES, ("basic",))
    if "schemes" in top and not schemes:
        reader.error(top.get("schemes") or root, "'schemes' must list at least one scheme", ", ".join(SCHEME_NAMES))
    scheme_options = {}
    for name in SCHEME_NAMES:
        section = top.mapping(name)
        if name in schemes or section is not None:
            scheme_options[name] = spec_for(name).parse_options(reader, section)
    for name in schemes:
        spec = spec_for(name)
        if spec.needs_cleartext:
            for user in users.values():
                if user.secret.cleartext is None and user.secret.kind not in spec.secret_kinds:
                    reader.error(
                        top.get("htpasswd") or top.get("htdigest") or root,
                        f"user '{user.name}' ({user.source}) has only a hash, which {spec.token} cannot use",
                        f"give {spec.token} users a password in 'users:'",
                    )
    default = Outcome(top.choice("default", OUTCOMES, Outcome.REQUIRED.value))
    rules = parse_rules(reader, top.get("rules"), faults_module.parse_faults)
    faults = faults_module.parse_faults(reader, top.get("faults"), top_level=True)
    cache_section = top.mapping("cache")
    cache = CacheConfig()
    if cache_section is not None:
        cache = CacheConfig(
            ttl=cache_section.number("ttl", cache.ttl, minimum=0) or 0.0,
            max_entries=cache_section.integer("max_entries", cache.max_entries, minimum=1) or 1,
        )
        cache_section.finish()
    scenario = Scenario(
        path=file,
        name=top.text("name") or Path(file).stem,
        description=top.text("description", "") or "",
        realm=realm,
        users=users,
        schemes=schemes,
        scheme_options=scheme_options,
        rules=Rules(rules, default),
        faults=faults,
        login_hint=top.text("login_hint", "") or "",
        cache=cache,
        files=tuple(files),
        response=parse_response(reader, top.mapping("response"), schemes),
    )
    top.finish()
    needs_users = default is Outcome.REQUIRED or any(r.outcome is Outcome.REQUIRED for r in rules)
    if needs_users and not any(key in top for key in ("users", "htpasswd", "htdigest")):
        hint = "add 'users:', 'htpasswd:' or 'htdigest:'"
        reader.error(root, "the scenario requires authentication but defines no users", hint)
    problems.raise_if_any()
    return scenario


def _read_users(
    reader: Reader, top: Mapping, base: Path, env: MappingABC[str, str] | None, files: list[str], realm: str
) -> dict[str, User]:
    users: dict[str, User] = {}
    section = top.mapping("users")
    if section is not None:
        for name, key_node, value in section.items():
            where = f"{reader.file}:{key_node.start_mark.line + 1}"
            spec_node, domain = value, ""
            if isinstance(value, yaml.MappingNode):
                entry = reader.mapping(value, f"user '{name}'")
                assert entry is not None
                spec_node = entry.get("password")
                domain = entry.text("domain", "") or ""
                entry.finish()
                if spec_node is None:
                    reader.error(value, f"user '{name}' needs a 'password'")
                    continue
            spec = reader.text(spec_node, f"password of '{name}'")
            if spec is None:
                continue
            if ":" in name:
                reader.error(key_node, f"user name '{name}' contains ':'", "RFC 7617 forbids ':' in Basic user names")
                continue
            password, error = resolve_password(spec, base, env)
            if password is None:
                reader.error(spec_node, error)
                continue
            if spec.startswith("file:"):
                files.append(str((base / spec[5:]).resolve()))
            users[name] = User(name, Secret("cleartext", password), where, domain)

    _read_user_files(reader, top, "htpasswd", base, files, users, parse_htpasswd)
    _read_user_files(
        reader, top, "htdigest", base, files, users, lambda text, file, found: parse_htdigest(text, file, realm, found)
    )
    return users


def _read_user_files(
    reader: Reader,
    top: Mapping,
    key: str,
    base: Path,
    files: list[str],
    users: dict[str, User],
    parse: Callable[[str, str, Problems], list[User]],
) -> None:
    """Users from the files named by ``key`` (htpasswd, htdigest); a user defined twice is an error."""
    for path_text in top.text_list(key):
        path = base / path_text
        node = top.get(key)
        assert node is not None
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            reader.error(node, f"cannot read {key} file {path}: {e.strerror}")
            continue
        except ValueError:  # a NUL or a lone surrogate in the name
            reader.error(node, f"cannot read htpasswd file {ascii(str(path))}: not a valid file name")
            continue
        files.append(str(path.resolve()))
        for user in parse(text, str(path), reader.problems):
            if user.name in users:
                reader.error(
                    node, f"user '{user.name}' is defined twice", f"{users[user.name].source} and {user.source}"
                )
                continue
            users[user.name] = user
