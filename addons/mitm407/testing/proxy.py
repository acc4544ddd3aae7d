"""One real mitm407 proxy process for a test: where it listens, how to reach it, what it logged.

A client library's regression test needs a proxy that behaves like the corporate
one, not a mock: ``start_proxy`` runs the same mitmdump with the same addon as
``mitm407 run``, on a free 127.0.0.1 port, with its own confdir (CA) and hop log.
With the control API on (``control=True``, or a ``control_port`` option), the
proxy's methods change its state mid-test (``expire``, ``lock``, ``advance``, ...)
without the test writing HTTP requests or sleeping.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from mitm407.proxy import controlclient
from mitm407.proxy.controlclient import TOKEN_ENV, ControlAPIError, ControlEndpoint, json_body
from mitm407.scenario.load import load_scenario, resolve_scenario_path
from mitm407.teach.lab import Mitmdump, free_port, start_mitm407

__all__ = ["ControlAPIError", "Proxy", "start_proxy"]

NO_PROXY = "localhost,127.0.0.1,::1"
CONTROL_START_TIMEOUT = 30.0
WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # listening everywhere: reach it on loopback


def scenario_file(scenario: str | Path | Mapping[str, Any], dict_path: Path) -> Path:
    """A scenario given as a shipped name, a path, or a dict (written to ``dict_path`` as YAML)."""
    if isinstance(scenario, Mapping):
        dict_path.write_text(yaml.safe_dump({"version": 1, **dict(scenario)}, sort_keys=False), encoding="utf-8")
        return dict_path
    return resolve_scenario_path(str(scenario))


def cleartext_passwords(path: Path) -> dict[str, str]:
    """The scenario's cleartext users, for ``url_for``; a broken scenario raises here with file:line:col."""
    return load_scenario(path).cleartext_passwords()


def control_endpoint(options: Mapping[str, str]) -> ControlEndpoint | None:
    """Where the proxy started with ``options`` answers control requests; None when the API is off."""
    port_text = str(options.get("control_port", "0")).strip()
    if not port_text.isdigit() or not int(port_text):
        return None  # off (or not a port: mitmdump refuses to start and says why)
    host = str(options.get("control_host", "127.0.0.1")).strip()
    token = str(options.get("control_token", "")) or os.environ.get(TOKEN_ENV, "")  # the proxy inherits the env
    return ControlEndpoint(int(port_text), WILDCARDS.get(host, host), token)


def wait_for_control(process: Mitmdump, endpoint: ControlEndpoint) -> None:
    """Return once ``GET /status`` answers: the Control addon starts its server a little after the proxy port.

    If the process dies or the API stays silent for ``CONTROL_START_TIMEOUT`` seconds (e.g. its
    port is taken), stop it and raise with its log's tail.
    """
    request = controlclient.build_request(endpoint, "status")
    deadline = time.monotonic() + CONTROL_START_TIMEOUT
    while process.proc.poll() is None and time.monotonic() < deadline:
        try:
            controlclient.send(request, timeout=2.0)
            return
        except ControlAPIError:
            time.sleep(0.05)
    process.give_up(f"mitm407 control API did not answer on {endpoint.address}")


@dataclass
class Proxy:
    """A running proxy. Stop it with ``stop()`` (the pytest fixture does)."""

    process: Mitmdump
    scenario_path: Path
    hoplog_path: Path
    passwords: dict[str, str] = field(repr=False)  # cleartext users of the scenario: for url_for, never logged
    control: ControlEndpoint | None = None  # None: the control API is off
    switches: int = field(default=0, repr=False)  # scenarios switched to so far (names dict scenarios' files)

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

    # -- the control API (proxy/control.py), one method a request ---------------------------
    def _call(self, action: str, query: Mapping[str, str] | None = None, body: tuple[bytes, str] | None = None) -> Any:
        if self.control is None:
            raise RuntimeError("the control API is off: start the proxy with mitm407_proxy(..., control=True)")
        return controlclient.call(self.control, action, query, body)

    def status(self) -> dict[str, Any]:
        """``GET /status``: scenario, users (names), schemes, faults, overrides, counters, the clock's offset."""
        return self._call("status")

    def expire(self) -> list[str]:
        """Every credential accepted so far expires now; the users whose next request is challenged."""
        return self._call("expire")["expired"]

    def rotate(self) -> list[str]:
        """Each ``rotate`` fault's next password takes effect now; the users rotated."""
        return self._call("rotate")["rotated"]

    def lock(self, user: str) -> None:
        """Refuse ``user`` until ``unlock``."""
        self._call("lock", {"user": user})

    def unlock(self, user: str) -> bool:
        """Accept ``user`` again; whether it was locked."""
        return self._call("unlock", {"user": user})["was_locked"]

    def reset(self) -> None:
        """Faults, counters, caches, overrides and connection state start afresh (the clock keeps its offset)."""
        self._call("reset")

    def advance(self, seconds: float) -> float:
        """The proxy's clock jumps ``seconds`` forward (nonces go stale, windows end); the total offset."""
        return self._call("advance", body=json_body({"advance": seconds}))["offset"]

    def switch_scenario(self, scenario: str | Path | Mapping[str, Any]) -> None:
        """Switch to ``scenario`` (shipped name, path or dict, as at start); ``url_for`` then uses its users.

        It is read here first, so a broken one raises ``ScenarioError`` (file:line:col) and nothing changes.
        """
        workdir = self.hoplog_path.parent  # start_proxy's workdir
        path = scenario_file(scenario, workdir / f"scenario-{self.switches + 1}.yaml").resolve()
        passwords = cleartext_passwords(path)
        self._call("scenario", body=json_body({"name": str(path)}))
        self.switches += 1
        self.scenario_path, self.passwords = path, passwords

    def stop(self) -> None:
        self.process.stop()


def start_proxy(
    scenario: str | Path | Mapping[str, Any] = "default",
    workdir: Path | None = None,
    options: Mapping[str, str] | None = None,
    control: bool = False,
) -> Proxy:
    """Start mitm407 with ``scenario`` on a free port; wait until it listens, and its control API answers.

    ``control=True`` turns the control API on, on a free 127.0.0.1 port, unless ``options`` name a
    ``control_port`` already.
    """
    workdir = Path(workdir or tempfile.mkdtemp(prefix="mitm407-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = scenario_file(scenario, workdir / "scenario.yaml")
    passwords = cleartext_passwords(path)  # before any process starts
    hoplog = workdir / "hops.jsonl"
    options = {"hoplog": str(hoplog), **(options or {})}
    if control and control_endpoint(options) is None:
        options["control_port"] = str(free_port())
    endpoint = control_endpoint(options)
    # the token goes in the environment the proxy reads it from, not on its command line (``ps``)
    token = options.pop("control_token", "")
    process = start_mitm407(workdir, path, name="mitm407", options=options, env={TOKEN_ENV: token} if token else None)
    if endpoint is not None:
        try:
            wait_for_control(process, endpoint)
        except BaseException:  # Ctrl-C while waiting: no fixture holds it yet to stop it
            process.stop()
            raise
    return Proxy(process, Path(path), hoplog, passwords, endpoint)
