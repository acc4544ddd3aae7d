"""SOCKS5 username/password (RFC 1929) for ``mitmdump --mode socks5 -s addons/proxyauth.py``.

mitmproxy's SOCKS5 server (``proxy/layers/modes.py``, the same in 11 and 12)
offers the username/password method only while the option ``proxyauth`` is
truthy, and then asks the ``socks5_auth`` hook, whose ``data.valid`` decides.
So, when a mode is socks5 and the scenario's ``socks5.auth`` is ``required``,
this addon sets ``proxyauth`` to a sentinel (a random ``user:password`` no
client can know) and makes mitmproxy's built-in ProxyAuth addon inert
(``mitmproxy_compat.neutralise_builtin_proxyauth``): it never validates a
password nor keeps one in ``flow.metadata["proxyauth"]``. A real ``proxyauth``
set by the user still clashes with mitm407 (``Addon.apply_options``).

The handshake only authenticates the client connection (``gate/socks5.py``);
``server_connect`` then asks the gate about the destination (a deny rule
refuses the SOCKS CONNECT: mitmproxy replies "host unreachable", 0x04), and
each HTTP request inside is decided by the gate on that connection state:
never challenged (SOCKS has no 407; an ``Authorization`` header inside the
tunnel is the origin's business), 403 where a rule denies it.

Fail closed: ``data.valid`` is set False first, and any exception leaves it
False (logged once, with its traceback).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, MutableMapping
from typing import Any, Protocol

from mitmproxy import connection, ctx, http
from mitmproxy.proxy import mode_specs

from mitm407.core.facts import RequestFacts
from mitm407.core.flowmeta import META_ANSWERED
from mitm407.core.results import AuthResult, Result
from mitm407.gate.gate import NEW_CONNECTION, ConnectionState, Gate, GateRequest, Kind
from mitm407.gate.socks5 import SCHEME, Socks5Decision, Socks5Gate
from mitm407.proxy.mitmproxy_compat import neutralise_builtin_proxyauth, offer_hook
from mitm407.proxy.slowchecks import SlowChecks
from mitm407.scenario.load import Scenario
from mitm407.wire.terminal import printable

logger = logging.getLogger("mitm407")

# What ``proxyauth`` holds while mitm407 does SOCKS5 authentication: valid syntax for the built-in addon
# (``user:password``), random, never accepted by anything (the built-in addon is made inert anyway).
SENTINEL = f"mitm407-socks5:{secrets.token_urlsafe(24)}"
SLOW_CHECKS = 2  # off-loop checks before checking inline (a reload mid-check empties the cache)
OPEN_AUTH = AuthResult(Result.BYPASS, "SOCKS5 without authentication (scenario socks5.auth: none)", SCHEME)


def is_own_proxyauth(value: str | None) -> bool:
    """Is this ``proxyauth`` value the sentinel mitm407 set (not a user's setting)?"""
    return value == SENTINEL


def is_socks5(client: connection.Client) -> bool:
    return isinstance(client.proxy_mode, mode_specs.Socks5Mode)


def runs_socks5(modes: Any) -> bool:
    """Does one of the ``mode`` option's specs run a SOCKS5 server?"""
    for spec in modes or ():
        try:
            if isinstance(mode_specs.ProxyMode.parse(spec), mode_specs.Socks5Mode):
                return True
        except ValueError:
            continue
    return False


class AuthAddon(Protocol):
    """What this addon uses of the auth addon (``proxy/addon.py``): its scenario, gate and connection table."""

    scenario: Scenario | None
    gate: Gate | None
    hop_name: str
    connections: MutableMapping[connection.Client, ConnectionState]
    slow_checks: SlowChecks

    def earned(self, client: connection.Client, **changes: AuthResult | None) -> None: ...


class Socks5Auth:
    """SOCKS5 authentication against the auth addon's scenario; connection state goes in its table."""

    def __init__(self, auth: AuthAddon) -> None:
        self.auth = auth
        self._gate: Socks5Gate | None = None

    # -- options -------------------------------------------------------------
    def configure(self, updated: set[str]) -> None:
        if not updated & {"mode", "scenario", "proxyauth"}:
            return
        scenario = self.auth.scenario
        wanted = runs_socks5(ctx.options.mode) and scenario is not None and scenario.socks5.wants_password
        current = ctx.options.proxyauth
        if wanted and not current:
            if scenario is not None and not scenario.users:
                logger.warning("mitm407: SOCKS5 asks for a username and password, but scenario '%s' has no users: "
                               "every SOCKS5 client is refused (socks5: {auth: none} turns it off)", scenario.name)
            ctx.options.update(proxyauth=SENTINEL)  # configure runs again for every addon, this one too
            return
        if not wanted and is_own_proxyauth(current):
            ctx.options.update(proxyauth=None)
            return
        if is_own_proxyauth(current) and not neutralise_builtin_proxyauth(ctx.master):
            logger.warning("mitm407: mitmproxy's built-in proxyauth addon not found; nothing to neutralise")
        # a SOCKS5 connection cannot be challenged: the hook exists only while a SOCKS5 server runs
        offer_hook(self, "requestheaders", self.no_challenge if runs_socks5(ctx.options.mode) else None)

    def no_challenge(self, flow: http.HTTPFlow) -> None:
        """After the auth addon: a 401/407 it made inside a SOCKS5 connection closes the connection instead.

        Inside SOCKS there is no 407: the connection lost its authentication (the control API expired
        or locked its user). A SOCKS server ends such a session; the client reconnects and authenticates.
        """
        try:
            response = flow.response
            if response is None or not flow.metadata.get(META_ANSWERED) or not is_socks5(flow.client_conn):
                return
            if response.status_code in (401, 407):
                logger.info("mitm407: SOCKS5 connection from %s is no longer authenticated; closed",
                            printable(str(flow.client_conn.peername), 100))
                flow.kill()
        except Exception:
            logger.error("mitm407: internal error after a request inside SOCKS5; connection closed", exc_info=True)
            flow.kill()

    def socks_gate(self) -> Socks5Gate | None:
        """The SOCKS5 check of the auth addon's current scenario load (rebuilt after a reload)."""
        gate = self.auth.gate
        if gate is None:
            return None
        if self._gate is None or self._gate.gate is not gate:
            self._gate = Socks5Gate(gate)
        return self._gate

    # -- hooks ---------------------------------------------------------------
    def client_connected(self, client: connection.Client) -> None:
        """``socks5.auth: none``: the connection is open, as on a SOCKS server without authentication."""
        try:
            scenario = self.auth.scenario
            if is_socks5(client) and scenario is not None and not scenario.socks5.wants_password:
                self.auth.earned(client, authenticated=OPEN_AUTH)
        except Exception:  # nothing earned: the gate then decides without it
            logger.error("mitm407: internal error on a new SOCKS5 connection", exc_info=True)

    def socks5_auth(self, data: Any) -> Awaitable[None] | None:
        """The username/password of a SOCKS5 handshake: ``data.valid`` only if everything said yes."""
        data.valid = False
        try:
            return self.check(data, SLOW_CHECKS)
        except Exception:
            self.fail(data)
            return None

    def check(self, data: Any, slow_checks: int) -> Awaitable[None] | None:
        gate = self.socks_gate()
        client = data.client_conn
        peer = client.peername
        client_ip = str(peer[0]) if peer else ""
        if gate is None:
            logger.info("mitm407: SOCKS5 %s -> refused: no valid scenario loaded", client_ip)
            return None
        decision = gate.decide(data.username, data.password, client_ip, client.id, defer_slow=slow_checks > 0)
        if decision.slow_check is not None:
            return self.after_slow_check(data, decision, slow_checks - 1)
        self.apply(data, decision, client_ip)
        return asyncio.sleep(decision.delay) if decision.delay > 0 else None

    async def after_slow_check(self, data: Any, decision: Socks5Decision, slow_checks: int) -> None:
        """bcrypt in a worker thread (the auth addon's pool), then the usual decision on a cache hit."""
        try:
            assert decision.slow_check is not None
            await self.auth.slow_checks.run(decision.slow_check)
            later = self.check(data, slow_checks)
            if later is not None:
                await later
        except Exception:
            self.fail(data)

    def apply(self, data: Any, decision: Socks5Decision, client_ip: str) -> None:
        auth = decision.auth
        assert auth is not None
        for fired in decision.fired:
            logger.info("mitm407: fault %s: %s", fired.name, fired.reason)
        if decision.valid:
            self.auth.earned(data.client_conn, authenticated=auth)
        data.valid = decision.valid
        logger.info(
            "mitm407: SOCKS5 %s -> %s: %s (%s)",
            client_ip, "accepted" if decision.valid else "refused", auth.result.value, printable(auth.reason, 300),
        )
        self.hoplog(data.client_conn, auth, decision.valid, [f.as_log() for f in decision.fired])

    @staticmethod
    def hoplog(client: connection.Client, auth: AuthResult, valid: bool, faults: list, **where: Any) -> None:
        """A hop-log line for what has no flow (the handshake, a refused CONNECT), if the hop log is loaded."""
        write = getattr(ctx.master.addons.get("hoplog"), "socks5_handshake", None)
        if write is not None:
            write(client, auth, valid, faults, **where)

    def fail(self, data: Any) -> None:
        data.valid = False
        logger.error("mitm407: internal error in the SOCKS5 handshake; refused", exc_info=True)

    def server_connect(self, data: Any) -> None:
        """The SOCKS CONNECT's destination: the rules decide, on the connection's authentication."""
        client = data.client
        if not is_socks5(client) or data.server.error:
            return
        try:
            gate = self.auth.gate
            if gate is None:
                data.server.error = "mitm407: no valid scenario loaded"
                return
            host, port = data.server.address
            peer = client.peername
            facts = self.connect_facts(str(host), int(port), str(peer[0]) if peer else "", client.id)
            state = self.auth.connections.get(client, NEW_CONNECTION)
            outcome = gate.decide(GateRequest(facts, (), state, False, False, self.auth.hop_name, False))
            if outcome.kind is not Kind.FORWARD:
                auth = outcome.auth or AuthResult(Result.DENIED, "refused", SCHEME)
                reason = auth.reason
                data.server.error = f"mitm407: {printable(reason, 200)}"
                logger.info("mitm407: SOCKS5 CONNECT %s:%s -> refused (%s)", printable(str(host), 200), port,
                            printable(reason, 300))
                self.hoplog(client, auth, False, [f.as_log() for f in outcome.fired], destination=(facts.host, port),
                            rule=outcome.rule)
        except Exception:
            logger.error("mitm407: internal error deciding a SOCKS5 CONNECT; refused", exc_info=True)
            data.server.error = "mitm407: internal error"

    @staticmethod
    def connect_facts(host: str, port: int, client_ip: str, connection_id: str) -> RequestFacts:
        return RequestFacts(
            method="CONNECT", target=f"{host}:{port}", host=host.lower().strip("[]"), port=port, path="",
            client_ip=client_ip, connection_id=connection_id, is_connect=True,
        )
