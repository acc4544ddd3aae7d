"""One real mitm407 proxy process for a test: where it listens, how to reach it, what it logged.

A client library's regression test needs a proxy that behaves like the corporate
one, not a mock: ``start_proxy`` runs the same mitmdump with the same addon as
``mitm407 run``, on a free 127.0.0.1 port, with its own confdir (CA) and hop log.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from mitm407.scenario.load import load_scenario, resolve_scenario_path
from mitm407.teach.lab import Mitmdump, start_mitm407

NO_PROXY = "localhost,127.0.0.1,::1"


def scenario_file(scenario: str | Path | Mapping[str, Any], workdir: Path) -> Path:
    """A scenario given as a shipped name, a path, or a dict (written to ``workdir`` as YAML)."""
    if isinstance(scenario, Mapping):
        path = workdir / "scenario.yaml"
        path.write_text(yaml.safe_dump({"version": 1, **dict(scenario)}, sort_keys=False), encoding="utf-8")
        return path
    return resolve_scenario_path(str(scenario))


@dataclass
class Proxy:
    """A running proxy. Stop it with ``stop()`` (the pytest fixture does)."""

    process: Mitmdump
    scenario_path: Path
    hoplog_path: Path
    passwords: dict[str, str] = field(repr=False)  # cleartext users of the scenario: for url_for, never logged

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the proxy without credentials."""
        return self.process.url

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def ca_cert(self) -> str:
        """The CA this proxy signs intercepted HTTPS with: trust it in the client for HTTPS through the proxy."""
        return self.process.ca_file

    @property
    def log(self) -> str:
        """Everything the proxy printed so far."""
        return self.process.log

    def url_for(self, user: str, password: str | None = None) -> str:
        """The proxy URL with ``user``'s credentials, percent-encoded (RFC 3986 userinfo).

        ``password`` defaults to the scenario's cleartext password for ``user``;
        hashed users (htpasswd) need it given.
        """
        if password is None:
            if user not in self.passwords:
                raise KeyError(f"user {user!r} has no cleartext password in the scenario: pass password=")
            password = self.passwords[user]
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def env(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        """HTTP_PROXY/HTTPS_PROXY/NO_PROXY in both cases, for a subprocess (``{**os.environ, **proxy.env()}``)."""
        url = self.url_for(user, password) if user is not None else self.url
        env: dict[str, str] = {}
        for name, value in (("http_proxy", url), ("https_proxy", url), ("no_proxy", NO_PROXY)):
            env[name] = env[name.upper()] = value
        return env

    def hops(self) -> list[dict[str, Any]]:
        """The hop-log records written so far, parsed (a half-written last line is skipped)."""
        try:
            text = self.hoplog_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def stop(self) -> None:
        self.process.stop()


def start_proxy(
    scenario: str | Path | Mapping[str, Any] = "default",
    workdir: Path | None = None,
    options: Mapping[str, str] | None = None,
) -> Proxy:
    """Start mitm407 with ``scenario`` on a free port; wait until it listens."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="mitm407-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = scenario_file(scenario, workdir)
    loaded = load_scenario(path)  # a broken scenario fails here with file:line:col, before any process starts
    passwords = {name: user.secret.value for name, user in loaded.users.items() if user.secret.kind == "cleartext"}
    hoplog = workdir / "hops.jsonl"
    process = start_mitm407(workdir, path, name="mitm407", options={"hoplog": str(hoplog), **(options or {})})
    return Proxy(process, Path(path), hoplog, passwords)
