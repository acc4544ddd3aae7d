"""A login portal: who signed in on the form, the redirect to it, the check of the form.

Pure (no mitmproxy): the gate asks ``decide`` for every proxied request when
the scenario has ``portal:``; ``proxy/portal.py`` serves the pages and asks
``form``, ``login`` and ``handoff``. The clock is injected.

How it works, as Zscaler, Blue Coat (``authenticate.mode form-ip-redirect``,
``form-cookie-redirect``) and Squid (``authenticate_ip_ttl``) do it:

- A request without credentials, from a client not signed in, that a rule
  asks credentials for, gets a redirect (302 by default) to the login page on
  a reserved host name (``http://login.mitm407.invalid/mitm407/login``: the
  client sends it through the proxy, which answers it itself, as Blue Coat's
  "virtual URL" ``www.cfauth.com``). The redirect carries the login page in its
  body, which is what a non-browser client reads instead of its data.
- The form posts ``username`` and ``password``; they are checked like Basic
  credentials (the same verification and off-loop bcrypt, one cache shared with
  SOCKS5: ``Gate.password_checker``; faults and the rules of the original URL apply;
  a user name with ``:`` is refused). Success trusts the client IP, or a
  cookie, for ``ttl`` seconds, and redirects back to ``next``.
- ``next`` is the URL of the request that was redirected, signed with a key
  of this process (HMAC): the form never redirects to a URL a third party
  chose (no open redirect).
- By cookie: the cookie must be set on the *origin*'s name to come back with
  later requests, so after the form the client goes to ``next`` with a
  one-time hand-off code in the query (``mitm407_portal=``); the proxy answers
  that request itself with ``Set-Cookie`` and a redirect to the clean URL.
- CONNECT cannot be redirected (the browser shows no answer to a refused
  CONNECT): it passes once the client IP is signed in; otherwise it gets the
  usual 407, whose body says where to sign in. A cookie never reaches a
  CONNECT, so by cookie HTTPS needs ``Proxy-Authorization``.

Rules still apply to every request: a signed-in client passes only where a
rule asks for credentials; deny still denies, bypass still bypasses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from mitm407.core.answers import Answer
from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.rules import Outcome as RuleOutcome
from mitm407.core.verdict import Action, Verdict
from mitm407.faults.base import Fired
from mitm407.faults.engine import FaultEngine
from mitm407.gate.authorizer import Authorizer, SlowCheck
from mitm407.gate.portal_page import done_page, login_page
from mitm407.scenario.portal import BY_COOKIE, BY_IP, PortalConfig
from mitm407.schemes.basic import BasicScheme
from mitm407.wire.terminal import printable


class PortalRequest(Protocol):
    """What the portal reads of the gate's ``GateRequest`` (the gate imports this module, not the reverse)."""

    @property
    def facts(self) -> RequestFacts: ...

    @property
    def credentials(self) -> Sequence[str]: ...

    @property
    def connection(self) -> Any: ...

    @property
    def portal_token(self) -> str: ...

    @property
    def hop_name(self) -> str: ...


class GateOutcome(Protocol):
    """What the portal reads and replaces of the gate's ``Outcome`` (a NamedTuple)."""

    @property
    def answer(self) -> Answer | None: ...

    @property
    def auth(self) -> AuthResult | None: ...

    def _replace(self, **changes: Any) -> Any: ...


RequestT = TypeVar("RequestT", bound=PortalRequest)
OutcomeT = TypeVar("OutcomeT", bound=GateOutcome)


class LoginOutcome(NamedTuple):
    """What the form post comes to; ``proxy/portal.py`` applies it. Never holds the password."""

    auth: AuthResult | None = None  # None only while a slow check is pending
    answer: Answer | None = None  # the page to send (None: reset, or a slow check first)
    rule: str | None = None
    kill: bool = False  # fault 'drop': reset the connection, no answer
    delay: float = 0.0  # fault 'delay'
    fired: tuple[Fired, ...] = ()
    slow_check: SlowCheck | None = None  # run off the event loop, then post again (a cache hit)

PORTAL_HOST = "login.mitm407.invalid"  # reserved (RFC 2606 .invalid): never a real site
LOGIN_PATH = "/mitm407/login"
COOKIE_NAME = "mitm407_portal"
HANDOFF_PARAM = "mitm407_portal"  # query parameter of the one-time hand-off (by cookie)
HANDOFF_TTL = 60.0
MAX_SESSIONS = 10_000  # signed-in clients (IPs, cookies) kept; the oldest go first
MAX_NEXT = 2048  # a longer original URL is not offered as ``next`` (the form still works)
MAX_FIELD = 1024  # user names and passwords longer than this are refused unchecked
MAX_FIELDS = 16  # fields in a posted form or the login page's query
SCHEME = "portal"  # ``auth.scheme`` in the hop log

HTML = (("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"))


def html_answer(status: int, body: str, *headers: tuple[str, str]) -> Answer:
    """An HTML page from the portal (never cached: it depends on who is signed in)."""
    return Answer(status, (*HTML, *headers), body, HTTPStatus(status).phrase)


@dataclass(frozen=True)
class LoginForm:
    """What the form posted; the password is never shown (``repr``) nor stored."""

    username: str
    password: str = field(repr=False)
    next_url: str = ""
    sig: str = ""


def parse_login_form(body: bytes) -> LoginForm:
    """``application/x-www-form-urlencoded`` as browsers and ``curl --data-urlencode`` send it."""
    fields = form_fields(body.decode("utf-8", "replace"))
    return LoginForm(fields.get("username", ""), fields.get("password", ""), fields.get("next", ""),
                     fields.get("sig", ""))


def form_fields(text: str) -> dict[str, str]:
    """``a=1&b=2`` (a form body, a query) as a dict; the first of repeated fields wins, as most servers
    read them. More than ``MAX_FIELDS`` fields is not a form of ours: nothing (the form then asks again)."""
    fields: dict[str, str] = {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        return fields
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


def redacted_form(body: bytes) -> bytes:
    """The posted form as it may be kept (saved flows): every field but the password, which is replaced."""
    fields = form_fields(body.decode("utf-8", "replace"))
    return urlencode([(k, "REDACTED" if k == "password" else v) for k, v in fields.items()]).encode()


def is_safe_url(url: str) -> bool:
    """An absolute ``http://`` URL of printable ASCII, not too long: fit for a ``Location`` header."""
    return (
        0 < len(url) <= MAX_NEXT
        and url[:7].lower() == "http://"
        and all(0x21 <= ord(c) <= 0x7E for c in url)
        and bool(urlsplit(url).hostname)
    )


def without_handoff(url: str) -> str:
    """``url`` without the hand-off parameter (it is single-use: a stale one must not travel on)."""
    parts = urlsplit(url)
    if HANDOFF_PARAM not in parts.query:
        return url
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != HANDOFF_PARAM]
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_handoff(url: str, code: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=f"{query}{HANDOFF_PARAM}={code}"))


class Sessions:
    """Keys (client IPs, cookie tokens, hand-off codes) signed in until a time; bounded, oldest out first."""

    def __init__(self, clock: Callable[[], float], limit: int = MAX_SESSIONS) -> None:
        self.clock = clock
        self.limit = limit
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()  # key -> (user, until)

    def grant(self, key: str, user: str, ttl: float) -> None:
        self._entries.pop(key, None)
        if len(self._entries) >= self.limit:
            self._entries.popitem(last=False)
        self._entries[key] = (user, self.clock() + ttl)

    def get(self, key: str) -> tuple[str, float] | None:
        """(user, seconds left), or None: unknown or expired (then forgotten)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        left = entry[1] - self.clock()
        if left <= 0:
            del self._entries[key]
            return None
        return entry[0], left

    def pop(self, key: str) -> tuple[str, float] | None:
        found = self.get(key)
        self._entries.pop(key, None)
        return found

    def __len__(self) -> int:
        return len(self._entries)


class Portal:
    """The portal of one scenario load: its sign-ins, its signing key, its password check."""

    def __init__(
        self,
        config: PortalConfig,
        authorizer: Authorizer,
        faults: FaultEngine,
        rotate: Callable[[], None],
        overrides: Callable[[Verdict], Verdict] = lambda verdict: verdict,
        clock: Callable[[], float] = time.monotonic,
        key: bytes | None = None,
        *,
        checker: BasicScheme,
    ) -> None:
        self.config = config
        self.authorizer = authorizer
        self.faults = faults
        self.rotate = rotate  # the gate's fault 'rotate' step, run before a password check
        self.overrides = overrides  # the control API's expired and locked users (gate/overrides.py)
        self.clock = clock
        self.host = PORTAL_HOST
        self.login_base = f"http://{PORTAL_HOST}{LOGIN_PATH}"
        self.by_cookie = config.by == BY_COOKIE
        self._key = key or os.urandom(32)
        self.signed_in = Sessions(clock)  # client IPs or cookie tokens
        self.handoffs = Sessions(clock)  # one-time codes -> cookie token (by cookie)
        self.checker = checker  # the gate's password check (Gate.password_checker), shared with SOCKS5

    # -- who is signed in ------------------------------------------------------------------
    def trust(self, facts: RequestFacts, token: str) -> AuthResult | None:
        """The sign-in this request rides on: its client IP's, or its cookie's (by cookie), or None."""
        key = token if self.by_cookie else facts.client_ip
        found = self.signed_in.get(key) if key else None
        if found is None:
            return None
        what = "cookie" if self.by_cookie else f"client IP {facts.client_ip}"
        return AuthResult(Result.OK, f"signed in on the login portal ({what}, {found[1]:.0f} s left)", SCHEME,
                          found[0], via_connection=True)

    def decide(
        self,
        request: RequestT,
        decide: Callable[[RequestT], OutcomeT],
        on_authenticated: Callable[[RequestT, AuthResult], OutcomeT | None],
    ) -> OutcomeT:
        """The gate's decision with the portal around it: trust of a sign-in, redirect instead of a 407."""
        facts = request.facts
        if request.connection.tunnel is not None and not facts.is_connect:
            return decide(request)  # inside an accepted tunnel: nothing to redirect
        if not request.credentials:  # credentials, when sent, are checked as usual (and removed)
            known = self.trust(facts, request.portal_token)
            if known is not None and self.overrides(Verdict(Action.FORWARD, known, None)).action is not Action.FORWARD:
                self.signed_in.pop(request.portal_token if self.by_cookie else facts.client_ip)  # control API
                known = None  # locked or expired by the operator: signed out, the form again
            if known is not None:
                outcome = on_authenticated(request, known)
                if outcome is not None:
                    return outcome._replace(auth=known)  # type: ignore[no-any-return]
        return self.redirect(request, decide(request))

    def redirect(self, request: PortalRequest, outcome: OutcomeT) -> OutcomeT:
        """A challenge (407) becomes the redirect to the login page; a CONNECT's 407 says where to sign in."""
        answer, auth = outcome.answer, outcome.auth
        if answer is None or auth is None or answer.status != 407 or auth.result in (Result.DENIED, Result.ERROR):
            return outcome
        facts = request.facts
        if facts.is_connect:
            how = ("a CONNECT carries no cookie: send Proxy-Authorization for HTTPS" if self.by_cookie else
                   "once signed in, HTTPS (CONNECT) from your address passes")
            note = (f"\nThis proxy has a login portal: open any http:// page through it, or {self.login_base}, "
                    f"and sign in; {how}.\n")
            return outcome._replace(answer=replace(answer, body=answer.body + note))  # type: ignore[no-any-return]
        next_url = without_handoff(facts.target)
        if not is_safe_url(next_url):
            next_url = ""
        location = self.login_url(next_url)
        body = login_page(hop=request.hop_name, action=self.login_base, next_url=next_url, sig=self.sign(next_url),
                          afterwards=f"After signing in you are trusted for {self.config.ttl:g} seconds.")
        status = self.config.status
        page = html_answer(status, body, ("Location", location))
        reason = f"{auth.reason}; redirected to the login portal"
        return outcome._replace(answer=page, auth=AuthResult(auth.result, reason, SCHEME, auth.user))  # type: ignore[no-any-return]

    # -- next: only ever the URL that was redirected -----------------------------------------
    def sign(self, next_url: str) -> str:
        return hmac.new(self._key, next_url.encode(), hashlib.sha256).hexdigest()[:32]

    def checked_next(self, next_url: str, sig: str) -> str:
        """``next_url`` if this process signed it (it was a redirected request's URL), else ""."""
        if not next_url or not is_safe_url(next_url):
            return ""
        return next_url if hmac.compare_digest(self.sign(next_url), sig.encode("ascii", "replace").decode()) else ""

    def login_url(self, next_url: str) -> str:
        if not next_url:
            return self.login_base
        return f"{self.login_base}?next={quote(next_url, safe='')}&sig={self.sign(next_url)}"

    # -- the pages -------------------------------------------------------------------------
    def form(self, facts: RequestFacts, query: Mapping[str, str], token: str, hop: str) -> tuple[Answer, AuthResult]:
        """GET of the login page: the form, or (already signed in) straight on to ``next``."""
        next_url = self.checked_next(query.get("next", ""), query.get("sig", ""))
        known = self.trust(facts, token)
        if known is not None and known.user is not None:
            return self.signed_in_answer(known.user, next_url, token), known
        body = login_page(hop=hop, action=self.login_base, next_url=next_url, sig=self.sign(next_url),
                          afterwards=f"After signing in you are trusted for {self.config.ttl:g} seconds.")
        return html_answer(200, body), AuthResult(Result.MISSING, "the login portal's form", SCHEME)

    def login(self, facts: RequestFacts, form: LoginForm, hop: str, defer_slow: bool = True) -> LoginOutcome:
        """POST of the form: check the password as Basic would, faults and the original URL's rule included."""

        next_url = self.checked_next(form.next_url, form.sig)
        target = facts_of(next_url, facts) if next_url else facts
        user = form.username
        if not user or not form.password or len(user) > MAX_FIELD or len(form.password) > MAX_FIELD:
            auth = AuthResult(Result.MISSING if not user or not form.password else Result.MALFORMED,
                              "the form needs a user name and a password (at most 1024 characters each)", SCHEME)
            return LoginOutcome(auth, self.again(hop, next_url, user, auth.reason, 200))
        if ":" in user:  # a Basic token cannot carry it: refused, never checked as another user (as SOCKS5 does)
            auth = AuthResult(Result.MALFORMED, "a user name cannot contain ':'", SCHEME)
            return LoginOutcome(auth, self.again(hop, next_url, user, auth.reason, 200))
        token = base64.b64encode(f"{user}:{form.password}".encode()).decode()  # a Basic token: never logged
        if defer_slow and self.checker.slow_check_pending(token):
            return LoginOutcome(slow_check=SlowCheck(self.checker, token))
        self.rotate()
        rule, wanted = self.authorizer.rule_for(target)
        if wanted is RuleOutcome.DENY:
            where = rule.label if rule else "the default"
            verdict = Verdict(Action.DENY, AuthResult(Result.DENIED, f"denied by {where}", SCHEME, printable(user)),
                              rule)
        else:
            checked = self.checker.verify(token, target)
            auth = AuthResult(checked.result, checked.reason.replace("valid Basic credentials", "signed in on the "
                              "login portal"), SCHEME, checked.user)
            verdict = Verdict(Action.FORWARD if auth.result is Result.OK else Action.CHALLENGE, auth, rule)
        decision = self.faults.decide(target, self.overrides(verdict))
        verdict = decision.verdict
        auth = verdict.auth
        label = verdict.rule.label if verdict.rule is not None else None
        if decision.kill:
            return LoginOutcome(auth, None, label, kill=True, fired=decision.fired)
        if verdict.action is Action.FORWARD and auth.result is Result.OK and auth.user is not None:
            answer = self.grant(auth.user, facts, next_url)
            return LoginOutcome(auth, answer, label, delay=decision.delay, fired=decision.fired)
        status = 403 if verdict.action is Action.DENY else 200
        answer, rewritten = self.faults.rewrite(self.again(hop, next_url, printable(user), auth.reason, status),
                                                decision, target)
        return LoginOutcome(auth, answer, label, delay=decision.delay, fired=decision.fired + rewritten)

    def again(self, hop: str, next_url: str, user: str, error: str, status: int) -> Answer:
        """The form once more, with what went wrong (escaped by the page; never the password)."""
        body = login_page(hop=hop, action=self.login_base, next_url=next_url, sig=self.sign(next_url), user=user,
                          error=f"Sign-in failed: {error}.")
        return html_answer(status, body)

    def grant(self, user: str, facts: RequestFacts, next_url: str) -> Answer:
        """Sign the client in (its IP, or a new cookie token) and send it on."""
        token = ""
        if self.by_cookie:
            token = secrets.token_urlsafe(24)
            self.signed_in.grant(token, user, self.config.ttl)
        else:
            self.signed_in.grant(facts.client_ip, user, self.config.ttl)
        return self.signed_in_answer(user, next_url, token)

    def signed_in_answer(self, user: str, next_url: str, token: str) -> Answer:
        """303 to ``next`` (by cookie: with a hand-off code), or the "signed in" page when there is none."""
        headers: tuple[tuple[str, str], ...] = ()
        if self.by_cookie and token:
            headers = (("Set-Cookie", self.cookie(token)),)  # for the portal's own name (GET of the form)
        body = done_page(user=user, ttl=self.config.ttl, by=self.config.by, next_url=next_url)
        if not next_url:
            return html_answer(200, body, *headers)
        location = next_url
        if self.by_cookie and token:
            code = secrets.token_urlsafe(16)
            self.handoffs.grant(code, token, HANDOFF_TTL)
            location = with_handoff(next_url, code)
        return html_answer(303, body, *headers, ("Location", location))

    def cookie(self, token: str) -> str:
        return f"{COOKIE_NAME}={token}; Path=/; Max-Age={max(1, int(self.config.ttl))}; HttpOnly; SameSite=Lax"

    def handoff(self, url: str) -> tuple[Answer, AuthResult] | None:
        """By cookie: a request to ``next`` with a valid hand-off code gets the cookie for its origin."""
        code = next((v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True) if k == HANDOFF_PARAM),
                    None)
        if code is None:
            return None
        found = self.handoffs.pop(code)
        token = found[0] if found else ""
        session = self.signed_in.get(token) if token else None
        if session is None:
            return None  # unknown, used or expired: the gate decides as for any request (the login again)
        clean = without_handoff(url)
        auth = AuthResult(Result.OK, "login portal hand-off: cookie set for this site", SCHEME, session[0])
        body = done_page(user=session[0], ttl=self.config.ttl, by=BY_COOKIE, next_url=clean)
        return html_answer(302, body, ("Set-Cookie", self.cookie(token)), ("Location", clean)), auth


def facts_of(url: str, login: RequestFacts) -> RequestFacts:
    """The facts of the original request (a GET of ``url``) from the client that posted the form."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return RequestFacts(
        method="GET", target=url, host=(parts.hostname or "").lower(), port=parts.port or 80, path=path,
        client_ip=login.client_ip, connection_id=login.connection_id,
    )


__all__ = ["BY_COOKIE", "BY_IP", "COOKIE_NAME", "HANDOFF_PARAM", "LOGIN_PATH", "PORTAL_HOST", "LoginForm", "Portal",
           "Sessions", "parse_login_form"]
