"""The mitmproxy addon: options, hooks and wiring; the decisions live elsewhere.

Modelled on mitmproxy's own ``addons/proxyauth.py`` (options in ``load``,
``configure`` reacting to changes, per-connection state in a
``WeakKeyDictionary``) and better than it where it matters: any scheme from
the scenario, rules, a reason for every refusal, cached slow hashes, hot
reload that keeps the last good scenario, and no password in flow metadata.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import replace
from typing import Any

from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.proxy import mode_specs

from mitm407.core.answers import Answer, build_challenge, build_denial, credentials_field, credentials_header
from mitm407.core.facts import RequestFacts
from mitm407.core.problems import ScenarioError
from mitm407.core.results import AuthResult, Result
from mitm407.core.shape import build_shaped_answer
from mitm407.faults.engine import Decision, FaultEngine, Fired
from mitm407.gate.authorizer import Action, Authorizer, SlowCheck, Verdict
from mitm407.hoplog.hopname import add_hop_name_option
from mitm407.proxy import headerfields
from mitm407.proxy.reload import DEFAULT_SETTLE, Reloader
from mitm407.proxy.slowchecks import SlowChecks
from mitm407.scenario.load import Scenario, load_scenario, resolve_scenario_path

logger = logging.getLogger("mitm407")

META_AUTH = "mitm407.auth"  # AuthResult of the flow (never a secret)
META_ANSWERED = "mitm407.answered"  # this proxy generated the response
META_RULE = "mitm407.rule"  # label of the rule that applied, if any
META_SHAPED = "mitm407.shaped"  # the answer is a scenario's exact response shape: add no header to it
META_FAULT = "mitm407.fault"  # faults that fired on the flow: [{"name": ..., "reason": ...}]
META_NEEDS_BODY = "mitm407.needs_body"  # decision deferred to the request hook (Digest auth-int)


def is_proxy_mode(client: connection.Client) -> bool:
    """Regular/upstream mode answers 407; reverse and others act as the server (401)."""
    return isinstance(client.proxy_mode, (mode_specs.RegularMode, mode_specs.UpstreamMode))


def destination_host(flow: http.HTTPFlow) -> str:
    """The host the request goes to.

    To a proxy that is the request-target's host, which mitmproxy connects to; the
    Host header could name another (a bypassed host, say) and costs a parse per request.
    Acting as the server (reverse mode), the Host header says which site was asked for.
    """
    return flow.request.host if is_proxy_mode(flow.client_conn) else flow.request.pretty_host


def credentials_of(flow: http.HTTPFlow) -> list[str]:
    """Every value of the header the client puts credentials in (proxy or server), in order."""
    return headerfields.values(flow.request.headers, credentials_field(is_proxy_mode(flow.client_conn)))


def request_facts(flow: http.HTTPFlow, body: bytes | None = None) -> RequestFacts:
    request = flow.request
    is_connect = request.method == "CONNECT"
    peer = flow.client_conn.peername
    return RequestFacts(
        method=request.method.upper(),
        target=request.authority if is_connect else _request_target(flow),
        host=destination_host(flow).lower().strip("[]"),
        port=request.port,
        path="" if is_connect else request.path,
        client_ip=str(peer[0]) if peer else "",
        connection_id=flow.client_conn.id,
        is_connect=is_connect,
        body=body,
    )


def _request_target(flow: http.HTTPFlow) -> str:
    """The request-target as the client wrote it, as far as mitmproxy keeps it.

    mitmproxy (11 and 12) turns an absolute-form target into origin-form
    before our hooks run; to a forward proxy a client always sends the
    absolute form, so rebuild it there (Digest's ``uri`` is compared with it).
    """
    if is_proxy_mode(flow.client_conn):
        return flow.request.url
    return flow.request.path


def to_response(answer: Answer) -> http.Response:
    headers: list[tuple[bytes, bytes]] = [(k.encode(), v.encode("utf-8")) for k, v in answer.headers]
    if not answer.complete and not any(k.lower() == "content-type" for k, _ in answer.headers):
        headers.append((b"Content-Type", b"text/plain; charset=utf-8"))
    if answer.close and (b"Connection", b"close") not in headers:  # mitmproxy closes after Connection: close
        headers = [h for h in headers if h[0].lower() != b"connection"] + [(b"Connection", b"close")]
    response = http.Response.make(answer.status, answer.body.encode("utf-8"), headers)
    response.reason = answer.reason_phrase
    return response


class Addon:
    """Challenge, validate and record proxy authentication as a scenario says."""

    def __init__(self) -> None:
        self.scenario: Scenario | None = None
        self.authorizer: Authorizer | None = None
        self.faults: FaultEngine | None = None
        # What faults asked for on forwarding: a delay, a reset instead of the response.
        self.delays: MutableMapping[http.HTTPFlow, float] = weakref.WeakKeyDictionary()
        self.kill_on_response: weakref.WeakSet[http.HTTPFlow] = weakref.WeakSet()
        # Client connections authenticated as a whole: an accepted CONNECT tunnel
        # or a connection-bound scheme (NTLM). Never holds a password.
        self.authenticated: MutableMapping[connection.Client, AuthResult] = weakref.WeakKeyDictionary()
        self.slow_checks = SlowChecks()  # bcrypt in worker threads, off the event loop
        self.reloader = Reloader(lambda: self.scenario, self.install)
        self._watcher: asyncio.Task[None] | None = None
        self._running = False

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
        if ("proxyauth" in updated or "scenario" in updated) and ctx.options.proxyauth:
            raise exceptions.OptionsError(
                "mitm407 and mitmproxy's built-in proxyauth option are both active: "
                "remove --set proxyauth=... and define users in a scenario "
                "(--set scenario=FILE), or do not load addons/proxyauth.py"
            )
        if "scenario" in updated:
            path = resolve_scenario_path(ctx.options.scenario)
            try:
                self.install(load_scenario(path))
            except ScenarioError as e:
                raise exceptions.OptionsError(f"invalid scenario {path}:\n{e}") from None

    def install(self, scenario: Scenario) -> None:
        """Swap in a new scenario: new schemes, empty caches, tunnels kept."""
        self.scenario = scenario
        self.authorizer = Authorizer(scenario)
        self.faults = FaultEngine(scenario)
        self.reloader.loaded(scenario)
        self.attach_hooks()

    def attach_hooks(self) -> None:
        """Offer mitmproxy the ``request`` and ``response`` hooks only when the scenario uses them.

        mitmproxy looks every hook up on the addon at each event and calls what it finds
        (a call and its argument tuple: a few microseconds in a busy proxy) whether or not
        there is work. Only Digest (``auth-int`` reads the body; ``Proxy-Authentication-Info``),
        connection-bound schemes and faults (``drop: response``) work there: Basic without faults
        keeps one hook per request, ``requestheaders``.
        """
        schemes = self.authorizer.schemes if self.authorizer is not None else ()
        body = self.authorizer is not None and self.authorizer.may_want_body
        late = (
            body
            or any(scheme.name != "basic" for scheme in schemes)
            or (self.faults is not None and self.faults.active)
            or len(self.kill_on_response) > 0  # a 'drop: response' decided before a reload
        )
        self._offer("request", self.on_request if body else None)
        self._offer("response", self.on_response if late else None)

    def _offer(self, name: str, hook: Callable[[http.HTTPFlow], object] | None) -> None:
        if hook is None:
            self.__dict__.pop(name, None)
        else:
            setattr(self, name, hook)

    # -- life cycle ----------------------------------------------------------
    def running(self) -> None:
        self._running = True
        self.announce()
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self.watch())

    def done(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        self.slow_checks.close()

    def announce(self) -> None:
        scenario = self.scenario
        if scenario is None:
            return
        schemes = ", ".join(scheme.token for scheme in self.authorizer.schemes) if self.authorizer else ""
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

    async def watch(self) -> None:
        """Poll the scenario's files (``proxy/reload.py``): a bad edit keeps the last good scenario."""
        await self.reloader.run(lambda: ctx.options.scenario_reload, lambda: ctx.options.scenario_settle)

    # -- hooks ---------------------------------------------------------------
    # Hooks are sync (a coroutine per request costs): mitmproxy awaits what a hook returns, so
    # they return ``self.pause(flow)``, an awaitable only when a fault 'delay' applies, or
    # ``decide_after_slow_check``'s coroutine when uncached credentials need bcrypt.
    def http_connect(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.response is None:
            known = self.connection_auth(flow)
            if known is not None:  # a CONNECT on an NTLM-authenticated connection
                self.trust_connection(flow, known)
            else:
                values = credentials_of(flow)
                check = self.slow_check(flow, values)
                if check is not None:
                    decide = lambda: self.authorize_connect(flow, values)  # noqa: E731
                    return self.decide_after_slow_check(flow, check, values, decide)
                self.authorize_connect(flow, values)
        return self.pause(flow)

    def authorize_connect(self, flow: http.HTTPFlow, values: Sequence[str]) -> None:
        """An accepted CONNECT authenticates its tunnel: requests inside it are not challenged again."""
        if self.authorize(flow, values=values) is Action.FORWARD:
            self.authenticated[flow.client_conn] = flow.metadata[META_AUTH]

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.response is not None or flow.is_replay:
            return None
        known = self.connection_auth(flow)
        if known is not None:
            self.trust_connection(flow, known)
            fired = self.faults.tunnel_request(flow.client_conn.id) if self.faults else None
            if fired is not None:  # fault 'drop: after_connect'
                self.record_faults(flow, (fired,))
                flow.kill()
            return None
        values = credentials_of(flow)
        if self.authorizer is not None and values and self.authorizer.wants_body(values):
            flow.metadata[META_NEEDS_BODY] = True  # decided in `request`, once the body is read
            return None
        check = self.slow_check(flow, values)
        if check is not None:
            return self.decide_after_slow_check(flow, check, values, lambda: self.authorize(flow, values=values))
        self.authorize(flow, values=values)
        return self.pause(flow)

    def slow_check(self, flow: http.HTTPFlow, values: Sequence[str]) -> SlowCheck | None:
        """The bcrypt deciding this request would cost now (uncached credentials), if any."""
        if self.authorizer is None or not values:
            return None
        return self.authorizer.slow_check(values, lambda: request_facts(flow))

    async def decide_after_slow_check(
        self, flow: http.HTTPFlow, check: SlowCheck, values: Sequence[str], decide: Callable[[], object]
    ) -> None:
        """Run the slow check in a worker thread, then decide on the loop as the sync hook would.

        The check only fills the scheme's cache; ``decide`` (``authorize``)
        then makes the usual decision, faults and lockout included, on a cache
        hit. Meanwhile the flow may have been answered or killed (nothing left
        to decide), or the scenario reloaded (new schemes, empty caches: check
        once more). A 'rotate' fault rebuilding the schemes inside ``authorize``
        makes that one decision check synchronously, as every check did before.
        """
        for _ in range(2):
            await self.slow_checks.run(check)
            if flow.response is not None or flow.error is not None:
                return
            again = self.slow_check(flow, values)
            if again is None:
                break
            check = again
        decide()
        delay = self.pause(flow)
        if delay is not None:
            await delay

    @staticmethod
    def trust_connection(flow: http.HTTPFlow, known: AuthResult) -> None:
        """Inside an accepted tunnel (or on an NTLM-authenticated connection) a real proxy
        never challenges again: record how the request was authenticated and let it pass."""
        flow.metadata[META_AUTH] = AuthResult(
            known.result, "authenticated by its connection", known.scheme, known.user, via_connection=True
        )

    def connection_auth(self, flow: http.HTTPFlow) -> AuthResult | None:
        """How the client connection was authenticated, if it was.

        New credentials on an NTLM-authenticated connection, outside a TLS
        tunnel, start over (as IIS/ISA do) instead of being forwarded.
        """
        auth = self.authenticated.get(flow.client_conn)
        if (
            auth is not None
            and auth.via_connection
            and not flow.client_conn.tls_established
            and headerfields.has(flow.request.headers, b"proxy-authorization")
        ):
            del self.authenticated[flow.client_conn]
            return None
        return auth

    def on_request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """The ``request`` hook, when attached (``attach_hooks``): Digest ``auth-int`` decides here."""
        if flow.metadata.pop(META_NEEDS_BODY, False) and flow.response is None:
            self.authorize(flow, flow.request.raw_content)
            return self.pause(flow)
        return None

    def http_connected(self, flow: http.HTTPFlow) -> None:
        """The CONNECT's 200 is about to be sent: it carries the scheme's info headers."""
        self.add_auth_info(flow)

    def on_response(self, flow: http.HTTPFlow) -> None:
        """The ``response`` hook, when attached (``attach_hooks``)."""
        if flow in self.kill_on_response:  # fault 'drop: response'
            self.kill_on_response.discard(flow)
            flow.kill()
            return
        self.add_auth_info(flow)

    def add_auth_info(self, flow: http.HTTPFlow) -> None:
        """Headers an accepting scheme asked for (Digest's Proxy-Authentication-Info)."""
        auth = flow.metadata.get(META_AUTH)
        if flow.response is None or not isinstance(auth, AuthResult) or auth.result is not Result.OK:
            return
        is_proxy = is_proxy_mode(flow.client_conn)
        for name, value in auth.headers:
            # reverse mode answers as the server: Authentication-Info (RFC 7615)
            flow.response.headers.add(name if is_proxy else name.removeprefix("Proxy-"), value)

    def client_disconnected(self, client: connection.Client) -> None:
        self.authenticated.pop(client, None)
        if self.authorizer is not None:
            self.authorizer.connection_closed(client.id)
        if self.faults is not None:
            self.faults.connection_closed(client.id)

    def pause(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Fault 'delay': what the hook returns for mitmproxy to await, so the event loop is not blocked."""
        if not self.delays:
            return None
        delay = self.delays.pop(flow, 0.0)
        return asyncio.sleep(delay) if delay > 0 else None

    # -- the decision ----------------------------------------------------------
    def authorize(self, flow: http.HTTPFlow, body: bytes | None = None, values: Sequence[str] | None = None) -> Action:
        """Evaluate the flow, answer it if refused, strip credentials if accepted.

        ``values``: the credentials header's values, if the caller has read them already.
        """
        if self.authorizer is None:  # fail closed: never forward without a scenario
            flow.response = http.Response.make(503, b"mitm407 has no valid scenario loaded; see its log\n")
            flow.metadata[META_ANSWERED] = True
            return Action.DENY
        is_proxy = is_proxy_mode(flow.client_conn)
        header = credentials_header(is_proxy)
        facts = request_facts(flow, body)
        assert self.faults is not None and self.scenario is not None
        users = self.faults.rotated_users()  # fault 'rotate', before authentication
        if users is not None:
            self.authorizer = Authorizer(replace(self.scenario, users=users))
        if values is None:
            values = credentials_of(flow)
        verdict = self.authorizer.evaluate(facts, values, header)
        decision = self.faults.decide(facts, verdict)  # faults after authentication
        verdict = decision.verdict
        flow.metadata[META_AUTH] = verdict.auth
        if verdict.rule is not None:
            flow.metadata[META_RULE] = verdict.rule.label
        if decision.kill:  # fault 'drop': reset, no answer
            self.record_faults(flow, decision.fired)
            flow.kill()
            return Action.DENY
        if verdict.action is Action.FORWARD:
            ok = verdict.auth.result is Result.OK
            # Credentials are consumed here. On a bypass they are removed too, since
            # the next hop is the origin, except in upstream mode, where they may be
            # meant for the upstream proxy (RFC 9110 §11.7.2: a proxy MAY relay them).
            relay = not ok and isinstance(flow.client_conn.proxy_mode, mode_specs.UpstreamMode)
            if values and not relay and not decision.keep_credentials:
                headerfields.remove(flow.request.headers, credentials_field(is_proxy))  # kept only by 'hop_by_hop'
            if ok and verdict.auth.via_connection:  # connection-bound scheme (NTLM)
                self.authenticated[flow.client_conn] = verdict.auth
                peer = flow.client_conn.peername
                logger.info(
                    "mitm407: client %s:%s %s -> connection authenticated (%s)",
                    facts.client_ip,
                    peer[1] if peer else "?",
                    facts.method,
                    verdict.auth.reason,
                )
            self.on_forward(flow, decision)
            return verdict.action
        fired = self.refuse(flow, verdict, facts, is_proxy, decision)
        self.on_forward(flow, replace(decision, fired=fired))
        return verdict.action

    def on_forward(self, flow: http.HTTPFlow, decision: Decision) -> None:
        """Record the faults that fired and keep what they ask of later hooks."""
        self.record_faults(flow, decision.fired)
        if decision.delay > 0:
            self.delays[flow] = decision.delay
        if decision.kill_response:
            self.kill_on_response.add(flow)

    def record_faults(self, flow: http.HTTPFlow, fired: tuple[Fired, ...]) -> None:
        if not fired:
            return
        flow.metadata.setdefault(META_FAULT, []).extend(f.as_log() for f in fired)
        for f in fired:
            logger.info("mitm407: fault %s: %s", f.name, f.reason)

    def refuse(
        self, flow: http.HTTPFlow, verdict: Verdict, facts: RequestFacts, is_proxy: bool, decision: Decision
    ) -> tuple[Fired, ...]:
        """Answer the flow ourselves; returns every fault that fired on it, answer faults included."""
        assert self.authorizer is not None and self.faults is not None
        hop = ctx.options.hop_name
        deny = verdict.action is Action.DENY
        shaped = None
        if is_proxy and self.authorizer.scenario.response is not None:  # a captured proxy's shape
            stale = verdict.auth.result is Result.STALE
            shaped = build_shaped_answer(
                self.authorizer.scenario.response,
                verdict.auth,
                facts,
                lambda name: self.authorizer.challenges_of(name, facts, stale),
                lambda: self.authorizer.challenges(facts, stale),
                hop,
                deny=deny,
            )
        if shaped is not None:
            answer = shaped
        elif deny:
            answer = build_denial(verdict.auth, hop)
        else:
            result = verdict.auth.result
            # a handshake in progress (NTLM type 2) sends only its own challenge
            challenges = [] if result is Result.CONTINUE else self.authorizer.challenges(facts, result is Result.STALE)
            answer = build_challenge(verdict.auth, challenges, is_proxy, hop)
        answer, fired = self.faults.rewrite(answer, decision, facts)  # faults on the answer
        flow.response = to_response(answer)
        flow.metadata[META_ANSWERED] = True
        if answer.complete:
            flow.metadata[META_SHAPED] = True
        auth = verdict.auth
        logger.info(
            "mitm407: %s %s %s -> %d: %s%s",
            facts.client_ip,
            facts.method,
            facts.target if facts.is_connect else f"{facts.host}:{facts.port}{facts.path.split('?')[0]}",
            answer.status,
            auth.result.value,
            f" ({auth.reason})",
        )
        return decision.fired + fired
