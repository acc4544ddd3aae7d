"""Serve the login portal's pages (``portal:`` in the scenario): the form, its post, the cookie hand-off.

The pages live on a reserved host name (``http://login.mitm407.invalid/mitm407/login``,
``gate/portal.py``): a client configured for this proxy sends the request here,
and this addon answers it itself, before the auth addon (``entry.all_addons``),
as Blue Coat answers its "virtual URL". Nothing here decides: the pure
``Portal`` does; this addon turns flows into its arguments and applies what it
returns.

The form is posted: the password is in the body, never in a URL (the hop log
and ``-w`` files keep URLs). ``requestheaders`` marks such a post
(``META_PORTAL_FORM``: the auth addon leaves it alone) and the ``request`` hook
answers it once the body is read. Fail closed: every hook answers from this
proxy when anything raises, and a marked post always gets an answer.

Most scenarios have no portal, and mitmproxy calls every hook an addon offers
on every request: the hooks are offered only while they can have work
(``attach_hooks``, called by the auth addon whenever it installs a scenario).
"""


from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from mitmproxy import http

from mitm407.core.facts import RequestFacts
from mitm407.core.flowmeta import META_ANSWERED, META_AUTH, META_FAULT, META_PORTAL_FORM, META_RULE, auth_record
from mitm407.core.results import AuthResult
from mitm407.gate.authorizer import SlowCheck
from mitm407.gate.gate import Gate
from mitm407.gate.portal import (
    HANDOFF_PARAM,
    LOGIN_PATH,
    LoginForm,
    LoginOutcome,
    Portal,
    form_fields,
    parse_login_form,
    redacted_form,
)
from mitm407.hoplog.flows import is_proxy_mode
from mitm407.proxy.addon import Addon, error_response, request_facts, to_response
from mitm407.proxy.mitmproxy_compat import offer_hook
from mitm407.wire.terminal import printable

logger = logging.getLogger("mitm407.portal")

MAX_FORM = 8192  # bytes of a form post; more is refused unread (413)
_HANDOFF = HANDOFF_PARAM.encode()


def scrub(flow: http.HTTPFlow) -> None:
    """Replace the posted form by one without the password: mitmproxy keeps request bodies (``-w``, mitmweb)."""
    flow.request.content = redacted_form(flow.request.raw_content or b"")


class PortalPages:
    """Answer the login portal's requests; ``auth`` is the auth addon (its gate, slow checks, hop name)."""

    def __init__(self, auth: Addon) -> None:
        self.auth = auth
        self.had_portal = False
        auth.installed.append(self.attach_hooks)
        self.attach_hooks()

    def portal(self) -> Portal | None:
        gate: Gate | None = self.auth.gate
        return gate.portal if gate is not None else None

    def attach_hooks(self) -> None:
        """``requestheaders`` while the scenario has a portal; ``request`` from the first portal on.

        ``request`` stays: a form post marked before a reload removed the portal is still
        answered there (a 503), never left to be forwarded undecided (the auth addon skips it).
        """
        has_portal = self.portal() is not None
        self.had_portal = self.had_portal or has_portal
        offer_hook(self, "requestheaders", self.on_requestheaders if has_portal else None)
        offer_hook(self, "request", self.on_request if self.had_portal else None)

    # -- hooks (offered by ``attach_hooks``) -----------------------------------------------------
    def on_requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.is_replay:
            return
        portal = self.portal()
        if portal is None:
            return
        try:
            request = flow.request
            if request.host.lower() == portal.host:
                self.page(flow, portal)
            elif portal.by_cookie and _HANDOFF in request.data.path and is_proxy_mode(flow.client_conn):
                self.handoff(flow, portal)
        except Exception:  # fail closed: an answer from this proxy, never a forwarded request
            self.fail(flow)

    def on_request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.metadata.get(META_PORTAL_FORM) is not True or flow.response is not None:
            return None
        try:
            form = parse_login_form(flow.request.raw_content or b"")
            scrub(flow)  # before anything else: the password never stays in the flow (``-w`` files save it)
            return self.login(flow, form)
        except Exception:
            self.fail(flow)
            return None

    # -- the pages ------------------------------------------------------------------------------
    def page(self, flow: http.HTTPFlow, portal: Portal) -> None:
        """A request to the portal's host: GET the form, POST it; anything else is not here."""
        request = flow.request
        path = request.path.split("?", 1)[0]
        if not is_proxy_mode(flow.client_conn) or path != LOGIN_PATH:
            self.respond(flow, http.Response.make(404, b"mitm407 login portal: no such page\n",
                                                  {"Content-Type": "text/plain; charset=utf-8"}))
            return
        method = request.method.upper()
        if method in ("GET", "HEAD"):
            query = form_fields(request.path.partition("?")[2])
            facts = self.facts(flow)
            answer, auth = portal.form(facts, query, self.auth.portal_token(flow), self.auth.hop_name)
            flow.metadata[META_AUTH] = auth_record(auth)
            self.respond(flow, to_response(answer))
            return
        if method != "POST":
            self.respond(flow, http.Response.make(405, b"mitm407 login portal: GET or POST\n", {"Allow": "GET, POST"}))
            return
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_FORM:
            self.respond(flow, http.Response.make(413, b"mitm407 login portal: a form post has a Content-Length "
                                                  b"of at most 8192 bytes\n"))
            return
        request.stream = False  # read the body: the ``request`` hook answers (never streamed anywhere)
        flow.metadata[META_PORTAL_FORM] = True

    def login(self, flow: http.HTTPFlow, form: LoginForm, slow_checks: int = 2) -> Awaitable[None] | None:
        portal = self.portal()
        if portal is None:  # the scenario was reloaded without a portal meanwhile
            self.respond(flow, error_response(self.auth.hop_name, 503))
            return None
        outcome = portal.login(self.facts(flow), form, self.auth.hop_name, defer_slow=slow_checks > 0)
        if outcome.slow_check is not None:
            return self.after_slow_check(flow, form, outcome.slow_check, slow_checks - 1)
        return self.apply(flow, outcome)

    async def after_slow_check(self, flow: http.HTTPFlow, form: LoginForm, check: SlowCheck, slow_checks: int) -> None:
        """bcrypt in a worker thread (the auth addon's pool), then decide again on the loop: a cache hit."""
        await self.auth.slow_checks.then_decide(
            check,
            lambda: flow.response is not None or flow.error is not None,
            lambda: self.login(flow, form, slow_checks),
            lambda: self.fail(flow),
        )

    def apply(self, flow: http.HTTPFlow, outcome: LoginOutcome) -> Awaitable[None] | None:
        auth = outcome.auth
        if auth is not None:
            flow.metadata[META_AUTH] = auth_record(auth)
        if outcome.rule is not None:
            flow.metadata[META_RULE] = outcome.rule
        if outcome.fired:
            flow.metadata.setdefault(META_FAULT, []).extend(f.as_log() for f in outcome.fired)
        if outcome.kill:
            flow.kill()
            return None
        if outcome.answer is None:
            raise RuntimeError("login portal: an outcome without an answer")
        self.respond(flow, to_response(outcome.answer))
        self.log(flow, outcome.answer.status, auth)
        return asyncio.sleep(outcome.delay) if outcome.delay > 0 else None

    def handoff(self, flow: http.HTTPFlow, portal: Portal) -> None:
        """By cookie: ``next`` with a one-time code gets the cookie for its site (else the gate decides)."""
        found = portal.handoff(flow.request.url)
        if found is None:
            return
        answer, auth = found
        flow.metadata[META_AUTH] = auth_record(auth)
        self.respond(flow, to_response(answer))
        self.log(flow, answer.status, auth)

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def facts(flow: http.HTTPFlow) -> RequestFacts:
        return request_facts(flow, None, True, target=True)

    @staticmethod
    def respond(flow: http.HTTPFlow, response: http.Response) -> None:
        flow.response = response
        flow.metadata[META_ANSWERED] = True

    @staticmethod
    def log(flow: http.HTTPFlow, status: int, auth: AuthResult | None) -> None:
        peer = flow.client_conn.peername
        logger.info("mitm407: %s %s login portal -> %d: %s", peer[0] if peer else "?",
                    printable(flow.request.method, 10), status, printable(auth.reason, 300) if auth else "")

    def fail(self, flow: http.HTTPFlow) -> None:
        logger.error("mitm407: internal error in the login portal; answered 500", exc_info=True)
        try:
            if flow.metadata.pop(META_PORTAL_FORM, None):
                scrub(flow)
            self.respond(flow, error_response(self.auth.hop_name))
        except Exception:
            flow.kill()


__all__ = ["MAX_FORM", "PortalPages"]
