"""The one decision of a request: facts in, one ``Outcome`` out.

Everything that decides whether a request passes happens in ``Gate.decide``:
the connection's trust, the rules, the scheme, the faults, the answer. It
imports nothing from mitmproxy and touches no flow; the addon turns a flow
into a ``GateRequest``, calls ``decide`` once (inside the one ``try`` that
makes any failure an answer from this proxy, never a forwarded request) and
applies the ``Outcome``.

Trust is given only for what was earned:

- an accepted CONNECT trusts the requests *inside its tunnel*, once mitmproxy
  established it (``ConnectionState.tunnel``, set by the addon in
  ``http_connected``); a CONNECT that failed trusts nothing;
- a connection-bound scheme (NTLM, Negotiate) authenticates the client
  connection, nothing more: the rules (deny, bypass) still apply to every
  request on it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from mitm407.core.answers import Answer, build_challenge, build_denial, credentials_header
from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.rules import Outcome as RuleOutcome
from mitm407.core.shape import build_shaped_answer
from mitm407.faults.engine import Decision, FaultEngine, Fired
from mitm407.gate.authorizer import Action, Authorizer, SlowCheck, Verdict
from mitm407.gate.overrides import Overrides
from mitm407.gate.portal import Portal
from mitm407.scenario.load import Scenario
from mitm407.schemes.base import SchemeContext
from mitm407.schemes.basic import BasicScheme


class Kind(StrEnum):
    FORWARD = "forward"  # let the request through (after the listed changes)
    ANSWER = "answer"  # send ``Outcome.answer`` from this proxy
    KILL = "kill"  # reset the client connection, no answer (fault 'drop')
    SLOW_CHECK = "slow_check"  # run ``Outcome.slow_check`` off the event loop, then decide again
    NEED_BODY = "need_body"  # decide again once the request body is read (Digest auth-int)


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """What the client connection earned before this request."""

    tunnel: AuthResult | None = None  # the request is inside a tunnel an accepted CONNECT established
    authenticated: AuthResult | None = None  # a connection-bound scheme (NTLM) authenticated the connection
    tls: bool = False  # the client talks TLS to us (HTTPS proxy, or inside an intercepted tunnel)


NEW_CONNECTION = ConnectionState()


class GateRequest(NamedTuple):
    """One request as the gate sees it. (A NamedTuple, like ``Outcome``: immutable, and built on every
    request in about half the time of a frozen dataclass, measured.)"""

    facts: RequestFacts
    credentials: Sequence[str]  # every value of the credentials header, in order
    connection: ConnectionState = NEW_CONNECTION
    is_proxy: bool = True  # 407/Proxy-Authorization (False: reverse mode, 401/Authorization)
    upstream: bool = False  # upstream mode: credentials of a bypassed request may be for the upstream proxy
    hop_name: str = "mitm407"
    defer_slow: bool = True  # False: run a slow check (bcrypt) inline rather than asking for SLOW_CHECK
    portal_token: str = ""  # the login portal's cookie, when the scenario's portal trusts cookies (gate/portal.py)


class Outcome(NamedTuple):
    """What the addon does with the flow; every field is a plain instruction. Immutable (a NamedTuple)."""

    kind: Kind
    auth: AuthResult | None = None  # None only for SLOW_CHECK and NEED_BODY (nothing decided yet)
    rule: str | None = None  # label of the rule that applied
    answer: Answer | None = None  # ANSWER: the full response
    strip_credentials: bool = False  # FORWARD: remove the credentials header first
    response_headers: tuple[tuple[str, str], ...] = ()  # FORWARD: add to the response (Proxy-Authentication-Info)
    delay: float = 0.0  # seconds to wait before answering or forwarding (fault 'delay')
    kill_on_response: bool = False  # FORWARD: reset instead of relaying the response (fault 'drop')
    authenticates_connection: bool = False  # FORWARD: trust the client connection's later requests (NTLM)
    forget_connection: bool = False  # new credentials on an authenticated connection: it starts over
    opens_tunnel: bool = False  # FORWARD of a CONNECT: trust the tunnel once established
    fired: tuple[Fired, ...] = ()  # faults that acted, for the log and the flow record
    slow_check: SlowCheck | None = None  # SLOW_CHECK: what to run


def trusted(known: AuthResult) -> AuthResult:
    """How a request that rides on its connection's authentication is recorded."""
    return AuthResult(known.result, "authenticated by its connection", known.scheme, known.user, via_connection=True)


class Gate:
    """Rules, schemes and faults of one scenario load, and the one ``decide``."""

    def __init__(self, scenario: Scenario, clock: Callable[[], float] = time.monotonic) -> None:
        self.scenario = scenario
        self.authorizer = Authorizer(scenario, clock)
        self.faults = FaultEngine(scenario, clock)
        self.overrides = Overrides()  # the control API's expired and locked users
        # a login portal (``portal:``) around the decision: gate/portal.py
        self.portal = (
            Portal(scenario.portal, self.authorizer, self.faults, self.rotate_users, self.overrides.apply, clock,
                   checker=self.password_checker)
            if scenario.portal
            else None
        )
        # Only Digest (its ``uri``), a captured response shape and the portal (its ``next``) read a plain
        # request's target: without them the addon skips rebuilding the URL on every request.
        self.needs_target = (
            scenario.response is not None or self.portal is not None or any(s.name == "digest" for s in self.schemes)
        )

    @functools.cached_property
    def password_checker(self) -> BasicScheme:
        """The Basic scheme's check on this load's users, for passwords that come without a Basic header.

        The login portal's form and SOCKS5's username/password both use it: one check, one cache
        per scenario load, on the directory a rotation updates. With a portal it is built with the gate
        (in a reload's worker thread); otherwise at the first SOCKS5 handshake.
        """
        scenario = self.scenario
        return BasicScheme(SchemeContext(
            realm=scenario.realm, users=self.authorizer.users, cache_ttl=scenario.cache.ttl,
            cache_size=scenario.cache.max_entries, clock=self.faults.clock,
        ))

    # what the addon asks to wire its hooks
    @property
    def schemes(self) -> tuple:
        return self.authorizer.schemes

    @property
    def may_want_body(self) -> bool:
        return self.authorizer.may_want_body

    def connection_closed(self, connection_id: str) -> None:
        self.authorizer.connection_closed(connection_id)
        self.faults.connection_closed(connection_id)

    # -- the decision ------------------------------------------------------------------
    def decide(self, request: GateRequest) -> Outcome:
        portal = self.portal
        if portal is None or not request.is_proxy:
            return self.decide_request(request)
        return portal.decide(request, self.decide_request, self.on_authenticated_connection)

    def rotate_users(self) -> None:
        """Fault 'rotate', before any password check: the users move on when the rotation does."""
        users = self.faults.rotated_users()
        if users is not None:
            self.authorizer.users.replace_users(users)

    def decide_request(self, request: GateRequest) -> Outcome:
        facts, connection = request.facts, request.connection
        if connection.tunnel is not None and not facts.is_connect:
            return self.inside_tunnel(facts, connection.tunnel)
        forget = False
        known = connection.authenticated
        if known is not None and request.credentials and not connection.tls:
            # new credentials on an NTLM-authenticated connection (outside TLS) start over, as IIS/ISA do
            known, forget = None, True
        if known is not None:
            outcome = self.on_authenticated_connection(request, known)
            if outcome is not None:
                return outcome
        values, authorizer = request.credentials, self.authorizer
        if values:  # (attribute checks first: most scenarios have neither auth-int nor bcrypt)
            if authorizer.may_want_body and facts.body is None and not facts.is_connect and authorizer.wants_body(
                values
            ):
                return Outcome(Kind.NEED_BODY)
            if authorizer.has_slow_secrets and request.defer_slow:
                check = authorizer.slow_check(values, lambda: facts)
                if check is not None:
                    return Outcome(Kind.SLOW_CHECK, slow_check=check)
        self.rotate_users()
        verdict = self.overrides.apply(authorizer.evaluate(facts, values, credentials_header(request.is_proxy)))
        outcome = self.apply_faults(request, self.faults.decide(facts, verdict))
        return outcome._replace(forget_connection=True) if forget else outcome

    def inside_tunnel(self, facts: RequestFacts, tunnel: AuthResult) -> Outcome:
        """A request inside an established, accepted tunnel: a real proxy never sees (nor challenges) it."""
        auth = trusted(tunnel)
        fired = self.faults.tunnel_request(facts.connection_id)
        if fired is not None:  # fault 'drop: after_connect'
            return Outcome(Kind.KILL, auth, fired=(fired,))
        return Outcome(Kind.FORWARD, auth)

    def on_authenticated_connection(self, request: GateRequest, known: AuthResult) -> Outcome | None:
        """On an NTLM-authenticated connection the rule still decides; only ``auth: required`` rides on it.

        None: the rule does not ask for credentials (deny, bypass): decide as for any request.
        """
        rule, wanted = self.authorizer.rule_for(request.facts)
        if wanted is not RuleOutcome.REQUIRED:
            return None
        return Outcome(
            Kind.FORWARD, trusted(known), rule.label if rule else None, opens_tunnel=request.facts.is_connect
        )

    def apply_faults(self, request: GateRequest, decision: Decision) -> Outcome:
        verdict = decision.verdict
        auth = verdict.auth
        rule = verdict.rule.label if verdict.rule is not None else None
        if decision.kill:  # fault 'drop': reset, no answer
            return Outcome(Kind.KILL, auth, rule, fired=decision.fired)
        if verdict.action is not Action.FORWARD:
            answer, fired = self.faults.rewrite(self.answer(request, verdict), decision, request.facts)
            return Outcome(Kind.ANSWER, auth, rule, answer, delay=decision.delay, fired=decision.fired + fired)
        ok = auth.result is Result.OK
        # Credentials are consumed here. On a bypass they are removed too, since the next hop is the
        # origin, except in upstream mode, where they may be meant for the upstream proxy (RFC 9110
        # §11.7.2: a proxy MAY relay them). Fault 'hop_by_hop' keeps them on purpose.
        relay = not ok and request.upstream
        return Outcome(
            Kind.FORWARD,
            auth,
            rule,
            strip_credentials=bool(request.credentials) and not relay and not decision.keep_credentials,
            response_headers=auth.headers if ok else (),
            delay=decision.delay,
            kill_on_response=decision.kill_response,
            authenticates_connection=ok and auth.via_connection,
            opens_tunnel=request.facts.is_connect,
            fired=decision.fired,
        )

    def answer(self, request: GateRequest, verdict: Verdict) -> Answer:
        """This proxy's refusal: the scenario's captured shape, a 403, or a 407 (401) with challenges."""
        facts, auth, authorizer = request.facts, verdict.auth, self.authorizer
        deny = verdict.action is Action.DENY
        stale = auth.result is Result.STALE
        if request.is_proxy and self.scenario.response is not None:  # a captured proxy's shape
            shaped = build_shaped_answer(
                self.scenario.response,
                auth,
                facts,
                lambda name: authorizer.challenges_of(name, facts, stale),
                lambda: authorizer.challenges(facts, stale),
                request.hop_name,
                deny=deny,
            )
            if shaped is not None:
                return shaped
        if deny:
            return build_denial(auth, request.hop_name)
        # a handshake in progress (NTLM type 2) sends only its own challenge
        challenges = [] if auth.result is Result.CONTINUE else authorizer.challenges(facts, stale)
        return build_challenge(auth, challenges, request.is_proxy, request.hop_name)
