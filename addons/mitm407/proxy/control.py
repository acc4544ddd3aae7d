"""The control API: change a running proxy's state from a test, Toxiproxy-style, without sleeping.

    --set control_port=8081 [--set control_host=127.0.0.1] [MITM407_CONTROL_TOKEN=... in the environment]

JSON over HTTP (``proxy/controlserver.py``), off by default:

    GET  /status            scenario, users (names only), schemes, faults, overrides, counters
    PUT  /scenario          switch: {"name": "digest"} (shipped name or path) or a YAML body;
                            invalid -> 400 with the file:line:col problems, the running scenario unchanged
    POST /expire            every credential accepted so far expires now (next request challenged)
    POST /rotate            each 'rotate' fault's next password takes effect now
    POST /lock?user=NAME    that user is refused until /unlock?user=NAME
    POST /reset             faults, counters, caches, overrides and connection state start afresh
    POST /clock             {"advance": SECONDS}: the proxy's clock jumps forward (nonces go stale,
                            caches, expiry and lockout windows end) without anyone sleeping
    GET  /hops?since=N      hop-log records numbered above N (the last 10,000 are kept)
    GET  /ca.pem            the CA certificate clients must trust for HTTPS through the proxy

The same actions are mitmproxy commands (``mitm407.expire``, ``mitm407.advance SECONDS``,
...) for mitmweb and the console, and ``mitm407 ctl ACTION --port N`` on the command line.
The API can switch scenarios (and so read files the scenario names): it listens on
127.0.0.1 unless told otherwise, and another address requires a bearer token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mitmproxy import command, ctx, exceptions

from mitm407.core.clock import parse_advance, parse_advance_text, seconds_text
from mitm407.core.problems import ScenarioError
from mitm407.hoplog.addon import HopLog
from mitm407.proxy.addon import Addon
from mitm407.proxy.controlclient import TOKEN_ENV, is_loopback
from mitm407.proxy.controlserver import ControlError, ControlRequest, ControlServer, RawBody
from mitm407.scenario.load import Scenario, load_scenario, parse_scenario, resolve_scenario_path

logger = logging.getLogger("mitm407.control")

KEPT_HOPS = 10_000
LISTED_USERS = 1_000  # /status lists at most this many names (an htpasswd may hold millions)


def advance_of(body: bytes) -> float:
    """The step of ``POST /clock``, from ``{"advance": SECONDS}``; ``ControlError(400)`` with one line otherwise."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # (not UTF-8 is a ValueError too; RecursionError: "[[[[..." nested deep)
        raise ControlError(400, 'the body must be JSON: {"advance": SECONDS}') from None
    if not isinstance(data, dict) or set(data) != {"advance"}:
        raise ControlError(400, 'the body must be {"advance": SECONDS} and nothing else')
    try:
        return parse_advance(data["advance"])
    except ValueError as e:
        raise ControlError(400, str(e)) from None


def problems_json(error: ScenarioError) -> list[dict[str, Any]]:
    return [
        {"file": p.file, "line": p.line, "col": p.col, "message": p.message, "hint": p.hint} for p in error.problems
    ]


class Control:
    """Options, the HTTP server and the mitmproxy commands of the control API."""

    def __init__(self, auth: Addon, hoplog: Callable[[], HopLog | None]) -> None:
        self.auth = auth
        self.hoplog = hoplog  # the hop log addon in this process (it may be installed by another script)
        self.server: ControlServer | None = None
        self._running = False

    # -- options -------------------------------------------------------------------------
    def load(self, loader: Any) -> None:
        loader.add_option(
            "control_port", int, 0,
            "mitm407 control API port (JSON over HTTP: /status, /scenario, /expire, /rotate, /lock, /unlock, "
            "/reset, /clock, /hops, /ca.pem); 0: off.",
        )
        loader.add_option(
            "control_host", str, "127.0.0.1",
            "Address the control API listens on. Anything but a loopback address requires a token "
            f"(control_token, or the {TOKEN_ENV} environment variable).",
        )
        loader.add_option(
            "control_token", str, "",
            f"Bearer token the control API requires (Authorization: Bearer TOKEN). Prefer the {TOKEN_ENV} "
            "environment variable: options are shown in process lists and mitmweb.",
        )

    def token(self) -> str:
        return ctx.options.control_token or os.environ.get(TOKEN_ENV, "")

    def configure(self, updated: set[str]) -> None:
        if not updated & {"control_port", "control_host", "control_token"}:
            return
        try:
            self.check_options()
        except exceptions.OptionsError as e:
            if self._running:
                raise  # mitmproxy rejects the change and keeps the old value
            logger.error("mitm407: %s", e)  # at start-up: mitmdump exits cleanly, no traceback
            return
        if self._running:
            asyncio.get_running_loop().create_task(self.restart())

    def check_options(self) -> None:
        port, host = ctx.options.control_port, ctx.options.control_host
        if not 0 <= port <= 65535:
            raise exceptions.OptionsError(f"control_port must be 0 (off) to 65535, got {port}")
        if port and not is_loopback(host) and not self.token():
            raise exceptions.OptionsError(
                f"control_host={host} is not a loopback address: set a token ({TOKEN_ENV} or control_token) "
                "so that only your tests can drive the proxy"
            )

    def running(self) -> None:
        self._running = True
        try:
            self.check_options()
        except exceptions.OptionsError:
            return  # already logged by configure: mitmdump is exiting
        asyncio.get_running_loop().create_task(self.restart())

    def done(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def restart(self) -> None:
        self.done()
        port = ctx.options.control_port
        hoplog = self.hoplog()
        if hoplog is not None and hoplog.recent is None and port:
            hoplog.keep_recent(KEPT_HOPS)
        if not port:
            return
        server = ControlServer(self.routes(), self.token())
        try:
            await server.start(port, ctx.options.control_host)
        except OSError as e:
            logger.error("mitm407: control API cannot listen on %s:%s: %s", ctx.options.control_host, port, e)
            return
        self.server = server
        logger.info("mitm407: control API on http://%s:%s/status%s", ctx.options.control_host, port,
                    " (bearer token required)" if self.token() else "")

    def routes(self) -> Mapping[tuple[str, str], Callable[[ControlRequest], Any]]:
        return {
            ("GET", "/status"): lambda r: (200, self.status()),
            ("PUT", "/scenario"): self.put_scenario,
            ("POST", "/expire"): lambda r: (200, {"expired": self.auth.expire_now()}),
            ("POST", "/rotate"): lambda r: self.rotate(),
            ("POST", "/lock"): lambda r: self.set_lock(r, True),
            ("POST", "/unlock"): lambda r: self.set_lock(r, False),
            ("POST", "/reset"): lambda r: self.reset(),
            ("POST", "/clock"): self.post_clock,
            ("GET", "/hops"): self.hops,
            ("GET", "/ca.pem"): lambda r: self.ca_pem(),
        }

    # -- actions ------------------------------------------------------------------------
    def scenario(self) -> Scenario:
        if self.auth.scenario is None:
            raise ControlError(409, "no scenario loaded")
        return self.auth.scenario

    def status(self) -> dict[str, Any]:
        scenario, gate = self.scenario(), self.auth.require_gate()
        users = sorted(scenario.users)
        faults = [{"name": spec.name, "where": "all requests", "line": spec.line} for spec in scenario.faults]
        faults += [{"name": spec.name, "where": rule.label, "line": spec.line}
                   for rule in scenario.rules.rules for spec in rule.faults]
        hoplog, counts = self.hoplog(), self.auth.counts
        return {
            "scenario": {"name": scenario.name, "path": str(scenario.path), "description": scenario.description},
            "realm": scenario.realm,
            "schemes": [s.token for s in gate.schemes],
            "users": users[:LISTED_USERS],
            "users_total": len(users),
            "faults": faults,
            "overrides": {"locked": sorted(gate.overrides.locked), "expired": sorted(gate.overrides.expired)},
            "counters": {"decided": sum(counts.values()), "by_result": dict(sorted(counts.items()))},
            "clock": {"offset": self.auth.clock.offset},
            "hops": {"last": hoplog.sequence if hoplog is not None else 0},
        }

    async def put_scenario(self, request: ControlRequest) -> tuple[int, Any]:
        try:
            scenario = await asyncio.to_thread(lambda: self.auth.prepare(self.read_scenario(request.body)))
        except ScenarioError as e:
            return 400, {"error": "invalid scenario; the running one is unchanged", "problems": problems_json(e)}
        self.auth.install(scenario, "control API")
        return 200, {"scenario": scenario.name, "path": str(scenario.path)}

    def read_scenario(self, body: bytes) -> Scenario:
        """A scenario from a PUT body: ``{"name": NAME-OR-PATH}`` or the YAML text itself."""
        try:
            data = json.loads(body) if body.lstrip().startswith(b"{") else None
        except ValueError:
            data = None
        if isinstance(data, dict) and set(data) == {"name"} and isinstance(data["name"], str):
            return load_scenario(resolve_scenario_path(data["name"]))
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ScenarioError([]) from None
        return parse_scenario(text, "<control API: PUT /scenario>", Path.cwd())

    def rotate(self) -> tuple[int, Any]:
        users = self.auth.rotate_now()
        if not users:
            raise ControlError(409, "the scenario has no 'rotate' fault")
        return 200, {"rotated": users}

    def set_lock(self, request: ControlRequest, lock: bool) -> tuple[int, Any]:
        user = request.query.get("user", "")
        if not user:
            raise ControlError(400, "name the user: ?user=NAME")
        if user not in self.scenario().users:
            raise ControlError(404, "no such user in the scenario")
        if lock:
            self.auth.lock(user)
            return 200, {"locked": user}
        return 200, {"unlocked": user, "was_locked": self.auth.unlock(user)}

    def reset(self) -> tuple[int, Any]:
        self.auth.reset()
        hoplog = self.hoplog()
        if hoplog is not None and hoplog.recent is not None:
            hoplog.recent.clear()
        return 200, {"reset": True}

    def post_clock(self, request: ControlRequest) -> tuple[int, Any]:
        seconds = advance_of(request.body)
        return 200, {"advanced": seconds, "offset": self.advance(seconds)}

    def advance(self, seconds: float) -> float:
        """Move the proxy's clock forward (``core/clock.py``); the new offset. ``ControlError(400)`` if refused."""
        try:
            offset = self.auth.clock.advance(seconds)
        except ValueError as e:
            raise ControlError(400, str(e)) from None
        logger.info(
            "mitm407: clock advanced by %s s (offset %s s): nonces, caches, expiry and lockout windows "
            "see the later time", seconds_text(seconds), seconds_text(offset),
        )
        return offset

    def hops(self, request: ControlRequest) -> tuple[int, Any]:
        since_text = request.query.get("since", "0")
        if not since_text.isdigit():
            raise ControlError(400, "since must be a whole number")
        hoplog = self.hoplog()
        records = hoplog.records_since(int(since_text)) if hoplog is not None else []
        return 200, {"records": [{"n": n, **record} for n, record in records],
                     "last": hoplog.sequence if hoplog is not None else 0}

    def ca_pem(self) -> tuple[int, Any]:
        path = Path(os.path.expanduser(ctx.options.confdir)) / "mitmproxy-ca-cert.pem"
        try:
            return 200, RawBody(path.read_bytes(), "application/x-pem-file")
        except OSError:
            raise ControlError(404, "no CA certificate yet") from None

    # -- mitmproxy commands (mitmweb, the console, `mitmdump` scripts) --------------------
    @command.command("mitm407.expire")
    def cmd_expire(self) -> str:
        """Every credential accepted so far expires now: the next request of each such user is challenged."""
        return f"expired: {', '.join(self.auth.expire_now()) or 'nobody had authenticated'}"

    @command.command("mitm407.rotate")
    def cmd_rotate(self) -> str:
        """Each 'rotate' fault moves to its next password now."""
        users = self.auth.rotate_now()
        return f"rotated: {', '.join(users)}" if users else "the scenario has no 'rotate' fault"

    @command.command("mitm407.lock")
    def cmd_lock(self, user: str) -> str:
        """Refuse USER until mitm407.unlock."""
        self.auth.lock(user)
        return f"locked: {user}"

    @command.command("mitm407.unlock")
    def cmd_unlock(self, user: str) -> str:
        """Accept USER again after mitm407.lock."""
        return f"unlocked: {user}" if self.auth.unlock(user) else f"{user} was not locked"

    @command.command("mitm407.advance")
    def cmd_advance(self, seconds: str) -> str:
        """Move the proxy's clock SECONDS forward: nonces, caches, expiry and lockout windows see the later time."""
        try:
            step = parse_advance_text(seconds)
            offset = self.advance(step)
        except (ValueError, ControlError) as e:
            raise exceptions.CommandError(str(e)) from None
        return f"clock advanced by {seconds_text(step)} s (offset {seconds_text(offset)} s)"

    @command.command("mitm407.reset")
    def cmd_reset(self) -> str:
        """Faults, counters, caches, overrides and connection state back to a fresh start."""
        self.auth.reset()
        return "reset"
