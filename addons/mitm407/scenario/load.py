"""Scenario files: YAML in, one frozen, validated ``Scenario`` out.

Everything a request needs is decided here, once per load: users resolved
(``env:``/``file:``/htpasswd), rules compiled, scheme options checked, and
every credential format checked to be verifiable in this environment (bcrypt,
pyspnego importable). The hot path only reads the result. Errors are
collected, each with ``file:line:col``, and raised together as one
``ScenarioError``: a load never raises anything else for bad input.

Scenario files are trusted but may be huge, deep or half-written: the limits
below bound what one load can cost (docs/scenarios-loading.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mitm407.core.credentials import (
    Secret,
    User,
    missing_package,
    parse_htdigest,
    parse_htpasswd,
    resolve_password,
)
from mitm407.core.files import MIB, UnreadableFile, read_regular_file, shown
from mitm407.core.problems import Problems, ScenarioError
from mitm407.core.rules import OUTCOMES, Outcome, Rules, parse_rules
from mitm407.core.shape import ResponseShapes, parse_response
from mitm407.core.yamlnodes import Mapping, Node, Reader, compose
from mitm407.faults import registry as faults_module
from mitm407.scenario.pac import PacConfig, parse_pac
from mitm407.scenario.portal import PortalConfig, parse_portal
from mitm407.scenario.socks5 import Socks5Config, parse_socks5
from mitm407.schemes import SCHEME_NAMES, spec_for

SCENARIO_VERSION = 1
DEFAULT_SCENARIO = "default"

# Limits on one load (documented in docs/scenarios-loading.md). Each is far above any real
# scenario and low enough that a load cannot hang, exhaust the stack or fill memory.
MAX_SCENARIO_BYTES = 1 * MIB  # the scenario YAML itself
MAX_USER_FILE_BYTES = 256 * MIB  # one htpasswd/htdigest file (a 1M-line bcrypt htpasswd is ~70 MiB)
MAX_USERS = 2_000_000  # users of a scenario, from every source together
MAX_RULES = 1_000  # rules are tried in order on every request

# Python packages some scenario features import when they verify credentials, by import name.
PIP_NAMES = {"spnego": "pyspnego", "bcrypt": "bcrypt"}


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
    pac: PacConfig = field(default_factory=PacConfig)  # the PAC file this proxy serves (``pac:``, scenario/pac.py)
    portal: PortalConfig | None = None  # a login portal (``portal:``, scenario/portal.py); None: none

    def cleartext_passwords(self) -> dict[str, str]:
        """User -> password of every user given one in clear (not a hash): what a client or a KDC can use."""
        return {name: user.secret.cleartext for name, user in self.users.items() if user.secret.cleartext is not None}
    socks5: Socks5Config = field(default_factory=Socks5Config)  # SOCKS5 authentication (``socks5:``)


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
        text = read_regular_file(path, MAX_SCENARIO_BYTES)
    except UnreadableFile as e:
        reason = "scenario file not found" if e.reason == "no such file" else f"cannot read scenario file: {e.reason}"
        raise ScenarioError([_problem(shown(file), reason)]) from None
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

    version_node = top.get("version")
    if version_node is None or version_node.tag == "tag:yaml.org,2002:null":
        reader.error(version_node or root, "the scenario needs 'version: 1'",
                     "the version of the scenario format it is written for")
    else:
        version = reader.integer(version_node, "'version'")
        if version is not None and version != SCENARIO_VERSION:
            reader.error(version_node, f"unsupported scenario version {version}", "this mitm407 reads version 1")
    files = [str(Path(file).resolve())]
    realm = top.text("realm", "mitm407") or "mitm407"
    before = len(problems.items)
    users = _read_users(reader, top, base, env, files, realm)
    users_ok = len(problems.items) == before  # else "no users" would only repeat what is wrong
    schemes_node = top.get("schemes")
    if schemes_node is not None and not isinstance(schemes_node, yaml.SequenceNode):
        reader.error(schemes_node, "'schemes' must be a list", "e.g. schemes: [basic] or schemes: [digest, basic]")
    schemes = top.choice_list("schemes", SCHEME_NAMES, ("basic",))
    if "schemes" in top and not schemes:
        reader.error(top.get("schemes") or root, "'schemes' must list at least one scheme", ", ".join(SCHEME_NAMES))
    schemes = _importable_schemes(reader, schemes, top.get("schemes") or root)
    _check_slow_hashes(reader, users, top, root)
    scheme_options = {}
    for name in SCHEME_NAMES:
        section = top.mapping(name)
        if name in schemes or (section is not None and _scheme_importable(name)):
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
    rules_node = top.get("rules")
    if isinstance(rules_node, yaml.SequenceNode) and len(rules_node.value) > MAX_RULES:
        reader.error(rules_node, f"more than {MAX_RULES} rules ({len(rules_node.value)})",
                     "rules are tried in order on every request: group hosts and paths in fewer rules")
        rules_node = None
    rules = parse_rules(reader, rules_node, faults_module.parse_faults)
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
        pac=parse_pac(reader, top.mapping("pac")),
        portal=parse_portal(reader, top.mapping("portal")),
        socks5=parse_socks5(top.mapping("socks5")),
    )
    top.finish()
    needs_users = default is Outcome.REQUIRED or any(r.outcome is Outcome.REQUIRED for r in rules)
    if needs_users and not users and users_ok:
        defined = [key for key in ("users", "htpasswd", "htdigest") if key in top]
        if defined:
            reader.error(top.key_node(defined[0]), "the scenario requires authentication but its "
                         + " and ".join(f"'{key}'" for key in defined) + " define no users",
                         "nobody could ever authenticate: add a user, or set 'default: none' / 'auth: none'")
        else:
            reader.error(root, "the scenario requires authentication but defines no users",
                         "add 'users:', 'htpasswd:' or 'htdigest:'")
    problems.raise_if_any()
    return scenario


def _scheme_importable(name: str) -> bool:
    try:
        spec_for(name)
    except ImportError:
        return False
    return True


def _importable_schemes(reader: Reader, schemes: tuple[str, ...], node: Node) -> tuple[str, ...]:
    """The schemes whose module imports here; each other one is an error naming the package to install.

    NTLM and Negotiate need pyspnego. Without this check the scheme's module
    would fail to import at the first request that needs it (a failure on
    the decision path) or the load would end in a traceback.
    """
    items = node.value if isinstance(node, yaml.SequenceNode) else []
    usable = []
    for name in schemes:
        try:
            spec_for(name)
        except ImportError as e:
            where = next((item for item in items if getattr(item, "value", None) == name), node)
            reader.error(where, f"scheme '{name}' needs the Python package {_pip_name(e)}, which cannot be imported "
                         f"here ({type(e).__name__}: {e})", f"pip install {_pip_name(e)}")
            continue
        usable.append(name)
    return tuple(usable)


def _pip_name(error: ImportError) -> str:
    module = (error.name or "").partition(".")[0]
    return PIP_NAMES.get(module, module or "?")


def _check_slow_hashes(reader: Reader, users: MappingABC[str, User], top: Mapping, root: Node) -> None:
    """bcrypt hashes are verified by the ``bcrypt`` package: it must import now, not at the first login.

    One error for the scenario (not one per user: an htpasswd may hold a million).
    """
    first = next((user for user in users.values() if user.secret.kind == "bcrypt"), None)
    if first is None:
        return
    package = missing_package(first.secret)
    if package is None:
        return
    count = sum(1 for user in users.values() if user.secret.kind == "bcrypt")
    node = top.get("htpasswd") or top.get("users") or root
    reader.error(
        node,
        f"{count} user(s) have a bcrypt hash (first: '{first.name}', {first.source}), and the Python package "
        f"{package} cannot be imported here to verify them",
        f"pip install {package}",
    )


def _read_users(
    reader: Reader, top: Mapping, base: Path, env: MappingABC[str, str] | None, files: list[str], realm: str
) -> dict[str, User]:
    users: dict[str, User] = {}
    section = top.mapping("users")
    if section is not None and len(section.entries) > MAX_USERS:
        reader.error(top.key_node("users"), f"more than {MAX_USERS} users ({len(section.entries)})")
        section = None
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
    """Users from the files named by ``key`` (htpasswd, htdigest); a user defined twice is an error.

    Each file must be a regular file under ``MAX_USER_FILE_BYTES``: a FIFO or
    a device is refused, never waited on or read without end.
    """
    node = top.get(key)
    if node is None or node.tag == "tag:yaml.org,2002:null":
        return
    for item in reader.sequence(node, f"'{key}'"):
        path_text = reader.text(item, f"items of '{key}'")
        if path_text is None:
            continue
        path = base / path_text
        try:
            text = read_regular_file(path, MAX_USER_FILE_BYTES)
        except UnreadableFile as e:
            reader.error(item, f"cannot read {key} file {shown(path)}: {e.reason}")
            continue
        files.append(str(path.resolve()))
        for user in parse(text, str(path), reader.problems):
            if user.name in users:
                reader.error(
                    item, f"user '{user.name}' is defined twice", f"{users[user.name].source} and {user.source}"
                )
                continue
            if len(users) >= MAX_USERS:
                reader.error(item, f"more than {MAX_USERS} users", f"the limit is reached in {user.source}")
                return
            users[user.name] = user
