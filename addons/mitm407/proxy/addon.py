"""The mitmproxy addon: turns flows into facts, asks the gate, applies its outcome.

Modelled on mitmproxy's own ``addons/proxyauth.py`` (options in ``load``,
``configure`` reacting to changes, per-connection state in a
``WeakKeyDictionary``) and better than it where it matters: any scheme from
the scenario, rules, a reason for every refusal, cached slow hashes, hot
reload that keeps the last good scenario, and no password in flow metadata.

Fail closed: mitmproxy forwards a flow whose hook raised. Every hook that can
let a request through (``http_connect``, ``requestheaders``, ``request``, the
continuation after a slow check) goes through ``decide``, whose one ``try``
turns any exception (a parser bug, a missing bcrypt, odd bytes) into a 500
from this proxy, logged once with its traceback, never a forwarded request.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import replace
from typing import Any

from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.proxy import mode_specs

from mitm407.core.answers import Answer, as_server_header, credentials_field
from mitm407.core.clock import Clock
from mitm407.core.facts import RequestFacts
from mitm407.core.flowmeta import (
    META_ANSWERED,
    META_AUTH,
    META_FAULT,
    META_PORTAL_FORM,
    META_RULE,
    META_SHAPED,
    auth_record,
)
from mitm407.core.problems import ScenarioError
from mitm407.core.results import AuthResult, Result
from mitm407.faults.engine import Fired
from mitm407.gate.authorizer import SlowCheck
from mitm407.gate.gate import NEW_CONNECTION, ConnectionState, Gate, GateRequest, Kind, Outcome
from mitm407.gate.portal import COOKIE_NAME
from mitm407.hoplog import headerfields
from mitm407.hoplog.attribution import build_proxy_status
from mitm407.hoplog.flows import destination_host, is_proxy_mode
from mitm407.hoplog.hopname import add_hop_name_option
from mitm407.proxy.banner import describe_faults, describe_switch
from mitm407.proxy.mitmproxy_compat import offer_hook
from mitm407.proxy.reload import DEFAULT_SETTLE, Reloader
from mitm407.proxy.slowchecks import SlowChecks
from mitm407.proxy.socks5 import is_own_proxyauth
from mitm407.scenario.load import Scenario, load_scenario, resolve_scenario_path
from mitm407.wire.terminal import printable

logger = logging.getLogger("mitm407")

STARTUP_GRACE = 2.0  # seconds after ``running`` before an internal error is logged as an error
SLOW_CHECKS_PER_REQUEST = 2  # off-loop checks before deciding inline (a reload mid-check empties caches)
ERROR_AUTH = AuthResult(Result.ERROR, "internal error in this proxy while deciding (see the proxy log)")
NO_SCENARIO_AUTH = AuthResult(Result.ERROR, "no valid scenario loaded (see the proxy log)")


def request_facts(
    flow: http.HTTPFlow, body: bytes | None = None, is_proxy: bool | None = None, target: bool = True
) -> RequestFacts:
    """What the gate may look at; ``is_proxy``: ``is_proxy_mode``, if the caller has it already.

    ``target=False``: no scheme or shape of the scenario reads a plain request's target
    (``Gate.needs_target``), so the URL is not rebuilt (the costliest fact) and stays "".
    """
    request = flow.request
    if is_proxy is None:
        is_proxy = is_proxy_mode(flow.client_conn)
    method = request.method
    is_connect = method == "CONNECT"
    peer = flow.client_conn.peername
    return RequestFacts(
        method=method.upper(),
        target=request.authority if is_connect else _request_target(flow, is_proxy) if target else "",
        host=destination_host(flow, is_proxy).lower().strip("[]"),
        port=request.port,
        path="" if is_connect else request.path,
        client_ip=str(peer[0]) if peer else "",
        connection_id=flow.client_conn.id,
        is_connect=is_connect,
        body=body,
    )


def _request_target(flow: http.HTTPFlow, is_proxy: bool) -> str:
    """The request-target as the client wrote it, as far as mitmproxy keeps it.

    mitmproxy (11 and 12) turns an absolute-form target into origin-form
    before our hooks run; to a forward proxy a client always sends the
    absolute form, so rebuild it there (Digest's ``uri`` is compared with it).
    """
    return flow.request.url if is_proxy else flow.request.path


def credentials_of(flow: http.HTTPFlow) -> list[str]:
    """Every value of the header the client puts credentials in (proxy or server), in order."""
    return headerfields.values(flow.request.headers, credentials_field(is_proxy_mode(flow.client_conn)))


def to_response(answer: Answer) -> http.Response:
    """The answer as mitmproxy's response; header values keep any odd byte a scenario or client put there."""
    headers: list[tuple[bytes, bytes]] = [
        (k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape")) for k, v in answer.headers
    ]
    if not answer.complete and not any(k.lower() == "content-type" for k, _ in answer.headers):
        headers.append((b"Content-Type", b"text/plain; charset=utf-8"))
    if answer.close and (b"Connection", b"close") not in headers:  # mitmproxy closes after Connection: close
        headers = [h for h in headers if h[0].lower() != b"connection"] + [(b"Connection", b"close")]
    response = http.Response.make(answer.status, answer.body.encode("utf-8", "surrogateescape"), headers)
    response.reason = answer.reason_phrase
    return response


def error_response(hop_name: str, status: int = 500) -> http.Response:
    """What the client gets when deciding failed: no detail (that is in the proxy log), never a forward."""
    body = f"{status} Internal Server Error\n\n{hop_name} (mitm407) failed while deciding this request; " \
        "it was not forwarded. The proxy log has the details.\n"
    headers = (
        (b"Proxy-Status", build_proxy_status(hop_name, "proxy_internal_error").encode("utf-8", "surrogateescape")),
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Connection", b"close"),
    )
    return http.Response.make(status, body.encode("utf-8", "surrogateescape"), headers)


class Addon:
    """Challenge, validate and record proxy authentication as a scenario says."""

    def __init__(self) -> None:
        self.scenario: Scenario | None = None
        self.gate: Gate | None = None
        self.clock = Clock()  # every Gate's time, for the addon's lifetime: reloads keep POST /clock's offset
        self.hop_name = "mitm407"  # ctx.options.hop_name, cached by configure (options copy on every read)
        # What the outcome asks of later hooks, per flow. Side tables, not flow.metadata: only plain
        # values may go there (mitmproxy saves it with the flow).
        self.kill_on_response: weakref.WeakSet[http.HTTPFlow] = weakref.WeakSet()
        self.response_headers: MutableMapping[http.HTTPFlow, tuple[tuple[str, str], ...]] = weakref.WeakKeyDictionary()
        self.awaiting_body: weakref.WeakSet[http.HTTPFlow] = weakref.WeakSet()  # decided in ``request``
        self.connects: MutableMapping[http.HTTPFlow, AuthResult] = weakref.WeakKeyDictionary()  # accepted CONNECTs
        # What a client connection earned (never a password): the tunnel of an accepted CONNECT,
        # once established (``http_connected``); a connection-bound scheme's success (NTLM).
        # One table, one lookup per request: most connections earned nothing and are not in it.
        self.connections: MutableMapping[connection.Client, ConnectionState] = weakref.WeakKeyDictionary()
        self.slow_checks = SlowChecks()  # bcrypt in worker threads, off the event loop
        self.reloader = Reloader(
            lambda: self.scenario, lambda scenario: self.install(scenario, "file changed on disk"), self.load_with_gate
        )
        self._prepared: tuple[Scenario, Gate] | None = None  # a reload's gate, built in its worker thread
        self.counts: Counter[str] = Counter()  # requests decided, by auth result (control API status)
        # called after every install: addons that offer hooks only for some scenarios (proxy/portal.py)
        self.installed: list[Callable[[], None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._running = False
        self._started = False  # mitmproxy's start-up error check is over (see ``fail``)

    # -- options -----------------------------------------------------------
    def load(self, loader: Any) -> None:
        loader.add_option(
            "scenario",
            str,
            "",
            """
            mitm407 scenario: a YAML file path, or the name of a shipped scenario
            (e.g. "digest"). Empty: the built-in default (Basic auth, user "demo").
            """,
        )
        loader.add_option(
            "scenario_reload",
            int,
            1,
            "Seconds between checks of the scenario file (and files it names) for edits; 0 turns reloading off.",
        )
        loader.add_option(
            "scenario_settle",
            int,
            DEFAULT_SETTLE,
            "Seconds an edited scenario file must stay unchanged before it is reloaded (not half-written).",
        )
        add_hop_name_option(loader)

    def configure(self, updated: set[str]) -> None:
        try:
            self.apply_options(updated)
        except exceptions.OptionsError as e:
            if self._running:
                raise  # mitmproxy rejects the change and keeps the old value
            # At start-up an error log line makes mitmdump/mitmweb exit cleanly,
            # where a raised error would print a traceback.
            logger.error("mitm407: %s", e)

    def apply_options(self, updated: set[str]) -> None:
        if "hop_name" in updated:
            self.hop_name = ctx.options.hop_name
        if ("proxyauth" in updated or "scenario" in updated) and ctx.options.proxyauth and not is_own_proxyauth(
            ctx.options.proxyauth
        ):  # (the sentinel proxy/socks5.py sets to make mitmproxy's SOCKS5 server ask for a password is ours)
            raise exceptions.OptionsError(
                "mitm407 and mitmproxy's built-in proxyauth option are both active: "
                "remove --set proxyauth=... and define users in a scenario "
                "(--set scenario=FILE), or do not load addons/proxyauth.py"
            )
        if "scenario" in updated:
            path = resolve_scenario_path(ctx.options.scenario)
            try:
                self.install(load_scenario(path), "option set in mitmweb, the console or --set")
            except ScenarioError as e:
                raise exceptions.OptionsError(f"invalid scenario {path}:\n{e}") from None

    def install(self, scenario: Scenario, source: str = "") -> None:
        """Swap in a new scenario: new schemes, empty caches, tunnels kept.

        While running, a switch is logged like a file reload, whatever made it (``source``):
        the file changed, the option was set in mitmweb or the console, the control API.
        """
        previous = self.scenario
        prepared, self._prepared = self._prepared, None
        self.scenario = scenario
        self.gate = prepared[1] if prepared is not None and prepared[0] is scenario else Gate(scenario, self.clock.now)
        self.reloader.loaded(scenario)
        self.attach_hooks()
        for listener in self.installed:
            listener()
        if self._running and source:
            for line in describe_switch(previous, scenario, source).splitlines():
                logger.info("mitm407: %s", line)

    def load_with_gate(self, path: str) -> Scenario:
        """A reload's worker-thread step: read the files, then build the gate there too (``prepare``)."""
        return self.prepare(load_scenario(path))

    def prepare(self, scenario: Scenario) -> Scenario:
        """Build ``scenario``'s gate (schemes, user tables) now, for the next ``install`` of it.

        Called in a worker thread (a file reload, the control API's switch): building walks every
        user, about 0.1 s for a million, and on the event loop it would stall every request;
        ``install`` then only swaps it in. A prepared gate that no ``install`` takes (the reloader
        dropped a load whose files changed meanwhile) is cleared by the next ``install``.
        """
        self._prepared = (scenario, Gate(scenario, self.clock.now))
        return scenario

    # -- what the control API (proxy/control.py) and mitmproxy commands change ------------------
    def expire_now(self) -> list[str]:
        """Every credential accepted so far expires: each such user is challenged on its next request.

        Connections authenticated by a handshake (NTLM, Negotiate) start over too. Established
        tunnels are left alone: a proxy never sees inside them; their next CONNECT is challenged.
        """
        gate = self.require_gate()
        expired = gate.overrides.expire_all()
        self.forget_connections(lambda auth: True)
        return expired

    def lock(self, user: str) -> None:
        self.require_gate().overrides.lock(user)
        self.forget_connections(lambda auth: auth.user == user)

    def unlock(self, user: str) -> bool:
        return self.require_gate().overrides.unlock(user)

    def rotate_now(self) -> list[str]:
        """Every ``rotate`` fault moves to its next password now; the users concerned."""
        return self.require_gate().faults.advance_rotations()

    def reset(self) -> None:
        """Faults, counters, caches, overrides and connection state back to a fresh start."""
        scenario = self.scenario
        if scenario is None:
            raise RuntimeError("no scenario loaded")
        self.connections.clear()
        self.counts.clear()
        self.install(scenario)

    def forget_connections(self, which: Callable[[AuthResult], bool]) -> None:
        """Handshake-authenticated connections (``which`` of their results) must authenticate again."""
        for client, state in list(self.connections.items()):
            if state.authenticated is not None and which(state.authenticated):
                self.earned(client, authenticated=None)

    def require_gate(self) -> Gate:
        if self.gate is None:
            raise RuntimeError("no scenario loaded")
        return self.gate

    def attach_hooks(self) -> None:
        """Offer mitmproxy the ``request`` and ``response`` hooks only when the scenario uses them.

        mitmproxy looks every hook up on the addon at each event and calls what it finds
        (a call and its argument tuple: a few microseconds in a busy proxy) whether or not
        there is work. Only Digest (``auth-int`` reads the body; ``Proxy-Authentication-Info``),
        connection-bound schemes and faults (``drop: response``) work there: Basic without faults
        keeps one hook per request, ``requestheaders``. Flows still waiting for ``request`` or
        ``response`` from before a reload keep their hook: a flow waiting for its body is never
        forwarded undecided.
        """
        gate = self.gate
        body = (gate is not None and gate.may_want_body) or len(self.awaiting_body) > 0
        late = (
            body
            or (gate is not None and (any(s.name != "basic" for s in gate.schemes) or gate.faults.active))
            or len(self.kill_on_response) > 0
            or len(self.response_headers) > 0
        )
        offer_hook(self, "request", self.on_request if body else None)
        offer_hook(self, "response", self.on_response if late else None)

    # -- life cycle ----------------------------------------------------------
    def running(self) -> None:
        self._running = True
        # mitmdump exits if an error is logged before its start-up ends (addons.errorcheck, checked
        # once every addon's ``running`` returned); there is no hook for "started", so give it time.
        asyncio.get_running_loop().call_later(STARTUP_GRACE, self._mark_started)
        self.announce()
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self.watch())

    def _mark_started(self) -> None:
        self._started = True

    def done(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        self.slow_checks.close()

    def announce(self) -> None:
        scenario = self.scenario
        if scenario is None:
            return
        schemes = ", ".join(scheme.token for scheme in self.gate.schemes) if self.gate else ""
        users = ", ".join(sorted(scenario.users)[:10]) + (" ..." if len(scenario.users) > 10 else "")
        logger.info(
            "mitm407: scenario '%s' (%s), realm '%s', schemes %s, users: %s",
            scenario.name,
            scenario.path,
            scenario.realm,
            schemes,
            users or "none",
        )
        if scenario.login_hint:
            logger.info("mitm407: how to authenticate: %s", scenario.login_hint)
        else:
            logger.info("mitm407: passwords are defined in %s (not printed)", scenario.path)
        for line in describe_faults(scenario).splitlines():
            logger.info("mitm407: %s", line)

    async def watch(self) -> None:
        """Poll the scenario's files (``proxy/reload.py``): a bad edit keeps the last good scenario."""
        await self.reloader.run(lambda: ctx.options.scenario_reload, lambda: ctx.options.scenario_settle)

    # -- hooks ---------------------------------------------------------------
    # Every hook that can let a request through calls ``decide``. Hooks are sync (a coroutine per
    # request costs): mitmproxy awaits what a hook returns, so ``decide`` returns an awaitable only
    # when a fault 'delay' applies or uncached credentials need bcrypt (``offer_hook``, mitmproxy_compat.py).
    def http_connect(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.response is not None:
            return None
        return self.decide(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.response is not None or flow.is_replay:
            return None
        if flow.metadata.get(META_PORTAL_FORM) is True:  # the login portal answers it (proxy/portal.py)
            return None
        return self.decide(flow)

    def on_request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """The ``request`` hook, when attached (``attach_hooks``): Digest ``auth-int`` decides here."""
        if flow not in self.awaiting_body:
            return None
        self.awaiting_body.discard(flow)
        if flow.response is not None:
            return None
        raw = flow.request.raw_content
        return self.decide(flow, raw if raw is not None else b"")

    def http_connected(self, flow: http.HTTPFlow) -> None:
        """The tunnel is established: from now on the connection carries only that tunnel's requests."""
        try:
            auth = self.connects.pop(flow, None)
            if auth is not None:
                self.earned(flow.client_conn, tunnel=auth)
            self.add_response_headers(flow)
        except Exception:  # fail closed: the tunnel is simply not trusted, its requests get challenged
            logger.error("mitm407: internal error after a CONNECT was accepted", exc_info=True)

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        """The CONNECT failed (refused by us, or no connection upstream): it earned nothing."""
        self.connects.pop(flow, None)

    def on_response(self, flow: http.HTTPFlow) -> None:
        """The ``response`` hook, when attached (``attach_hooks``)."""
        try:
            if flow in self.kill_on_response:  # fault 'drop: response'
                self.kill_on_response.discard(flow)
                flow.kill()
                return
            self.add_response_headers(flow)
        except Exception:
            logger.error("mitm407: internal error on a response; answered 500 instead", exc_info=True)
            flow.response = error_response(self.hop_name)

    def add_response_headers(self, flow: http.HTTPFlow) -> None:
        """Headers an accepting scheme asked for (Digest's Proxy-Authentication-Info)."""
        headers = self.response_headers.pop(flow, None)
        if not headers or flow.response is None:
            return
        is_proxy = is_proxy_mode(flow.client_conn)
        for name, value in headers:
            # reverse mode answers as the server: Authentication-Info (RFC 7615)
            flow.response.headers.add(name if is_proxy else as_server_header(name), value)

    def earned(self, client: connection.Client, **changes: AuthResult | None) -> None:
        """Record what the client connection earned (``ConnectionState`` fields: tunnel, authenticated)."""
        state = replace(self.connections.get(client, NEW_CONNECTION), **changes)
        if state == NEW_CONNECTION:
            self.connections.pop(client, None)
        else:
            self.connections[client] = state

    def client_disconnected(self, client: connection.Client) -> None:
        self.connections.pop(client, None)
        if self.gate is not None:
            self.gate.connection_closed(client.id)

    # -- the decision ----------------------------------------------------------
    def decide(
        self, flow: http.HTTPFlow, body: bytes | None = None, slow_checks: int = SLOW_CHECKS_PER_REQUEST
    ) -> Awaitable[None] | None:
        """Ask the gate about the flow and apply its outcome: the one guarded call.

        Any exception from building the facts to applying the outcome ends in
        ``fail``: a 500 from this proxy, never a forwarded request.
        """
        try:
            gate = self.gate
            if gate is None:  # fail closed: never forward without a scenario
                self.answer_error(flow, NO_SCENARIO_AUTH, 503)
                return None
            is_proxy = is_proxy_mode(flow.client_conn)
            facts = request_facts(flow, body, is_proxy, gate.needs_target)
            outcome = gate.decide(self.gate_request(flow, facts, is_proxy, slow_checks > 0))
            return self.apply(flow, facts, outcome, is_proxy, slow_checks)
        except Exception:
            self.fail(flow)
            return None

    def gate_request(self, flow: http.HTTPFlow, facts: RequestFacts, is_proxy: bool, defer_slow: bool) -> GateRequest:
        client = flow.client_conn
        state = self.connections.get(client, NEW_CONNECTION)
        if state.authenticated is not None and state.tls != client.tls_established:
            state = replace(state, tls=client.tls_established)
        return GateRequest(
            facts,
            # inside a SOCKS5 connection an Authorization header is the origin's business, never ours
            () if isinstance(client.proxy_mode, mode_specs.Socks5Mode)
            else headerfields.values(flow.request.headers, credentials_field(is_proxy)),
            state,
            is_proxy,
            isinstance(client.proxy_mode, mode_specs.UpstreamMode),
            self.hop_name,
            defer_slow,
            self.portal_token(flow),
        )

    def portal_token(self, flow: http.HTTPFlow) -> str:
        """The login portal's cookie (gate/portal.py), read only when the scenario's portal trusts cookies."""
        portal = self.gate.portal if self.gate is not None else None
        if portal is None or not portal.by_cookie:
            return ""
        return flow.request.cookies.get(COOKIE_NAME, "")

    def apply(
        self, flow: http.HTTPFlow, facts: RequestFacts, outcome: Outcome, is_proxy: bool, slow_checks: int
    ) -> Awaitable[None] | None:
        """Do what the outcome says to the flow; returns what the hook must await (a delay, a slow check)."""
        kind = outcome.kind
        if kind is Kind.SLOW_CHECK:
            assert outcome.slow_check is not None
            return self.after_slow_check(flow, outcome.slow_check, facts.body, slow_checks - 1)
        if kind is Kind.NEED_BODY:
            self.awaiting_body.add(flow)
            self.attach_hooks()  # (already attached when the scenario may want a body)
            return None
        client = flow.client_conn
        if outcome.forget_connection:
            self.earned(client, authenticated=None)
        auth = outcome.auth
        assert auth is not None
        self.counts[auth.result] += 1
        flow.metadata[META_AUTH] = auth_record(auth)
        if outcome.rule is not None:
            flow.metadata[META_RULE] = outcome.rule
        self.record_faults(flow, outcome.fired)
        if kind is Kind.KILL:
            flow.kill()
            return None
        if kind is Kind.ANSWER:
            answer = outcome.answer
            assert answer is not None
            flow.response = to_response(answer)
            flow.metadata[META_ANSWERED] = True
            if answer.complete:
                flow.metadata[META_SHAPED] = True
            self.log_refusal(facts, answer.status, auth)
        else:
            if outcome.strip_credentials:
                headerfields.remove(flow.request.headers, credentials_field(is_proxy))
            if outcome.authenticates_connection:  # connection-bound scheme (NTLM)
                self.earned(client, authenticated=auth)
                peer = client.peername
                logger.info(
                    "mitm407: client %s:%s %s -> connection authenticated (%s)",
                    facts.client_ip, peer[1] if peer else "?", facts.method, printable(auth.reason, 200),
                )
            if outcome.opens_tunnel:
                self.connects[flow] = auth
            if outcome.response_headers:
                self.response_headers[flow] = outcome.response_headers
            if outcome.kill_on_response:
                self.kill_on_response.add(flow)
        return asyncio.sleep(outcome.delay) if outcome.delay > 0 else None

    async def after_slow_check(
        self, flow: http.HTTPFlow, check: SlowCheck, body: bytes | None, slow_checks: int
    ) -> None:
        """Run the slow check in a worker thread, then decide on the loop as the sync hook would.

        The check only fills the scheme's cache; ``decide`` then makes the usual
        decision, faults and lockout included, on a cache hit. Meanwhile the flow
        may have been answered or killed (nothing left to decide), or the scenario
        reloaded (new schemes, empty caches: the gate asks for one more check,
        after which it checks inline). Guarded like ``decide``: mitmproxy would
        forward the flow if this coroutine raised.
        """
        await self.slow_checks.then_decide(
            check,
            lambda: flow.response is not None or flow.error is not None,
            lambda: self.decide(flow, body, slow_checks),
            lambda: self.fail(flow),
        )

    def fail(self, flow: http.HTTPFlow) -> None:
        """Deciding raised: log it once with its traceback, answer 500, never forward."""
        try:
            request = flow.request
            what = f"{request.method} {request.authority or request.host}"
        except Exception:
            what = "a request"
        # While mitmproxy is still starting, an error line makes mitmdump exit: a client must not
        # be able to stop the proxy by racing its start, so it is a warning until then.
        logger.log(
            logging.ERROR if self._started else logging.WARNING,
            "mitm407: internal error while deciding %s; answered 500, not forwarded",
            printable(what, 200),
            exc_info=True,
        )
        self.answer_error(flow, ERROR_AUTH, 500)

    def answer_error(self, flow: http.HTTPFlow, auth: AuthResult, status: int) -> None:
        try:
            self.awaiting_body.discard(flow)
            self.connects.pop(flow, None)
            flow.response = error_response(self.hop_name, status)
            flow.metadata[META_ANSWERED] = True
            flow.metadata[META_AUTH] = auth_record(auth)
            self.counts[auth.result] += 1
        except Exception:  # even the error answer failed: reset rather than forward
            logger.error("mitm407: cannot even answer the error; resetting the connection", exc_info=True)
            flow.kill()

    def record_faults(self, flow: http.HTTPFlow, fired: tuple[Fired, ...]) -> None:
        if not fired:
            return
        flow.metadata.setdefault(META_FAULT, []).extend(f.as_log() for f in fired)
        for f in fired:
            logger.info("mitm407: fault %s: %s", f.name, f.reason)

    @staticmethod
    def log_refusal(facts: RequestFacts, status: int, auth: AuthResult) -> None:
        """One line per refusal; request-derived text (path, host) goes through ``printable``."""
        where = facts.target if facts.is_connect else f"{facts.host}:{facts.port}{facts.path.split('?')[0]}"
        logger.info(
            "mitm407: %s %s %s -> %d: %s (%s)",
            facts.client_ip,
            printable(facts.method, 20),
            printable(where, 200),
            status,
            auth.result.value,
            printable(auth.reason, 300),
        )
