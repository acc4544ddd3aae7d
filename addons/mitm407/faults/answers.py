"""Faults that reshape the challenge this proxy sends: missing, malformed, closing, HTML or the wrong status.

Each registers itself in ``decide`` when the verdict is a challenge and acts
in ``rewrite`` on the built answer (see ``AnswerRewriter``).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from http import HTTPStatus

from mitm407.core.answers import Answer
from mitm407.core.facts import RequestFacts
from mitm407.core.yamlnodes import Node, Reader
from mitm407.faults.base import (
    AnswerRewriter,
    BuildContext,
    FaultKind,
    Key,
    is_challenge_header,
    one_of,
    read_int_choice,
    settings_of,
)
from mitm407.wire.authparams import AuthParamError, parse_challenges, quote_string

# -- challenge_missing ---------------------------------------------------------------------


class ChallengeMissing(AnswerRewriter):
    name = "challenge_missing"

    def rewrite(self, answer: Answer, facts: RequestFacts) -> tuple[Answer, str]:
        headers = tuple(h for h in answer.headers if not is_challenge_header(h[0]))
        return replace(answer, headers=headers), f"{answer.status} sent without any challenge header (RFC 9110 §15.5.8)"


CHALLENGE_MISSING = FaultKind.without_settings(
    "challenge_missing",
    (
        "The 407 has no `Proxy-Authenticate` (or `WWW-Authenticate`) header, which RFC 9110 §15.5.8 requires. "
        "Reproduces proxies and appliances that answer 407 with only an HTML page, or whose challenge is "
        "stripped by a box in between: clients cannot tell which scheme to use, and many crash, loop or "
        "report a confusing error instead of asking for credentials."
    ),
    ChallengeMissing,
)

# -- challenge_malformed -------------------------------------------------------------------

MALFORMED_KINDS = ("unquoted_realm", "unterminated_quote", "unknown_scheme", "unknown_first", "garbage", "empty")


@dataclass(frozen=True)
class ChallengeMalformedSettings:
    kind: str = "unquoted_realm"
    scheme: str = "X-Corp-SSO"  # for unknown_scheme / unknown_first
    value: str = 'Basic realm=="CORP";;, ,=,"'  # for garbage


def parse_challenge_malformed(reader: Reader, node: Node) -> ChallengeMalformedSettings:
    m = settings_of(reader, node, "challenge_malformed")
    if m is None:
        return ChallengeMalformedSettings()
    default = ChallengeMalformedSettings()
    kind = m.choice("kind", MALFORMED_KINDS, default.kind)
    scheme = m.text("scheme", default.scheme) or default.scheme
    if any(not (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in scheme):
        reader.error(m.get("scheme") or m.node, f"scheme '{scheme}' is not an HTTP token", "letters, digits, - . _")
    value = m.text("value", default.value)
    m.finish()
    return ChallengeMalformedSettings(kind, scheme, default.value if value is None else value)


def rewrite_realms(value: str, unquoted: bool) -> str:
    """Every ``realm="X"`` of a challenge value written ``realm=X`` (or ``realm="X`` without the closing quote).

    The realms are found by the one auth-param parser, then their quoted form
    is replaced where it is written; a value it cannot read is left as it is.
    """
    try:
        realms = {c.params["realm"] for c in parse_challenges(value) if "realm" in c.params}
    except AuthParamError:
        return value
    for realm in realms:
        quoted = quote_string(realm)  # the parser refuses control characters: this cannot raise
        broken = "realm=" + (quoted[1:-1] if unquoted else quoted[:-1])
        value = re.sub("realm=" + re.escape(quoted), lambda _, broken=broken: broken, value, flags=re.IGNORECASE)
    return value


class ChallengeMalformed(AnswerRewriter):
    name = "challenge_malformed"

    def __init__(self, config: ChallengeMalformedSettings, context: BuildContext) -> None:
        self.config = config
        realm = context.realm.replace("\\", "\\\\").replace('"', '\\"')  # as the schemes write it
        self.unknown = f'{config.scheme} realm="{realm}"'

    def malform(self, values: list[str]) -> list[str]:
        kind = self.config.kind
        if kind in ("unquoted_realm", "unterminated_quote"):
            return [rewrite_realms(v, unquoted=kind == "unquoted_realm") for v in values]
        if kind == "unknown_scheme":
            return [self.unknown]
        if kind == "unknown_first":
            return [self.unknown, *values]
        if kind == "garbage":
            return [self.config.value]
        return [""]  # empty

    def rewrite(self, answer: Answer, facts: RequestFacts) -> tuple[Answer, str]:
        names = [k for k, _ in answer.headers if is_challenge_header(k)]
        name = names[0] if names else ("Proxy-Authenticate" if answer.status == 407 else "WWW-Authenticate")
        values = [v for k, v in answer.headers if is_challenge_header(k)]
        others = tuple(h for h in answer.headers if not is_challenge_header(h[0]))
        malformed = tuple((name, v) for v in self.malform(values))
        reason = f"challenge malformed ({self.config.kind.replace('_', ' ')})"
        return replace(answer, headers=malformed + others), reason


CHALLENGE_MALFORMED = FaultKind(
    name="challenge_malformed",
    doc=(
        'The challenge header is broken in one of several ways seen in the field. `unquoted_realm`: `realm=X` '
        'without quotes; `unterminated_quote`: `realm="X`; `unknown_scheme`: the only challenge is '
        '`SCHEME realm="..."`; `unknown_first`: that challenge before the real ones; `garbage`: one header with '
        "`value`; `empty`: one empty header. Reproduces appliances with hand-written challenge builders and "
        "SSO gateways that offer a proprietary scheme first: strict parsers reject the header, lenient ones "
        "pick the wrong scheme, and good clients skip what they cannot read."
    ),
    keys=(
        Key("kind", one_of(MALFORMED_KINDS), "`unquoted_realm`", "how the challenge is broken"),
        Key("scheme", "HTTP token", "`X-Corp-SSO`", "the unknown scheme of `unknown_scheme` and `unknown_first`"),
        Key("value", "text", f"`{ChallengeMalformedSettings.value}`", "the header value of `garbage`"),
    ),
    parse=parse_challenge_malformed,
    build=ChallengeMalformed,
)

# -- close_on_407 --------------------------------------------------------------------------


class CloseOn407(AnswerRewriter):
    name = "close_on_407"

    def rewrite(self, answer: Answer, facts: RequestFacts) -> tuple[Answer, str]:
        return replace(answer, close=True), f"connection closed after the {answer.status} (Connection: close)"


CLOSE_ON_407 = FaultKind.without_settings(
    "close_on_407",
    (
        "`Connection: close` on the 407, and the connection is closed after it (plain HTTP and CONNECT). "
        "Reproduces proxies that close the connection after every challenge (common for CONNECT): "
        "connection-bound schemes (NTLM, Negotiate) cannot complete their handshake, and clients that "
        "resend the credentials on the same socket meet a closed connection."
    ),
    CloseOn407,
)

# -- block_page ----------------------------------------------------------------------------

BLOCK_STATUSES = (200, 302, 307, 403)
BLOCK_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
<p>{message}</p>
<p>Requested: {target}</p>
<p>Sign-in portal: <a href="{location}">{location}</a></p>
</body>
</html>
"""


@dataclass(frozen=True)
class BlockPageSettings:
    status: int = 200
    location: str = "http://login.proxy.invalid/"  # for 302/307
    title: str = "Access to this site requires sign-in"
    message: str = (
        "Your request was blocked by the web security gateway because you are not signed in. "
        "Sign in on the corporate login portal, then try again."
    )


def parse_block_page(reader: Reader, node: Node) -> BlockPageSettings:
    m = settings_of(reader, node, "block_page")
    default = BlockPageSettings()
    if m is None:
        return default
    page = BlockPageSettings(
        status=read_int_choice(reader, m, "status", BLOCK_STATUSES, default.status),
        location=m.text("location", default.location) or default.location,
        title=m.text("title", default.title) or default.title,
        message=m.text("message", default.message) or default.message,
    )
    m.finish()
    return page


class BlockPage(AnswerRewriter):
    """A web-filter style HTML page instead of the 407 (a CONNECT gets 403: a 2xx would open the tunnel).

    The page is text/html: every value in it is HTML-escaped, the request
    target above all (a URL is the client's to choose, ``<script>`` included).
    """

    name = "block_page"
    config: BlockPageSettings

    def rewrite(self, answer: Answer, facts: RequestFacts) -> tuple[Answer, str]:
        config = self.config
        status = 403 if facts.is_connect and config.status < 300 else config.status
        body = BLOCK_PAGE.format(
            title=html.escape(config.title),
            message=html.escape(config.message),
            target=html.escape(facts.target if facts.is_connect else f"{facts.host}:{facts.port}{facts.path}"),
            location=html.escape(config.location, quote=True),
        )
        headers: tuple[tuple[str, str], ...] = (
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
        )
        if status in (302, 307):
            headers += (("Location", config.location),)
        page = Answer(status, headers, body, HTTPStatus(status).phrase, answer.close)
        return page, f"HTML block page with status {status} instead of the {answer.status}"


BLOCK_PAGE_KIND = FaultKind(
    name="block_page",
    doc=(
        "Instead of the 407: a generic web-filter HTML page (`text/html`), with `Location` for 302/307. A "
        "CONNECT gets 403 when `status` is 200 (a 2xx would open the tunnel). Reproduces web-filtering "
        "gateways and captive portals that answer unauthenticated requests with their own sign-in page: "
        "tools then parse the HTML as their data (npm's \"Unexpected token < in JSON\") instead of asking "
        "for credentials."
    ),
    keys=(
        Key("status", one_of(BLOCK_STATUSES), "200", "the status of the page"),
        Key("location", "URL", f"`{BlockPageSettings.location}`", "the sign-in portal (`Location` of 302/307)"),
        Key("title", "text", "a sign-in notice", "the page's title"),
        Key("message", "text", "a sign-in notice", "the page's text"),
    ),
    parse=parse_block_page,
    build=BlockPage,
)

# -- wrong_status --------------------------------------------------------------------------

WRONG_STATUSES = (401, 403, 407)
WRONG_STATUS_HEADERS = ("WWW-Authenticate", "Proxy-Authenticate")


@dataclass(frozen=True)
class WrongStatusSettings:
    status: int = 401
    header: str = "WWW-Authenticate"


def parse_wrong_status(reader: Reader, node: Node) -> WrongStatusSettings:
    m = settings_of(reader, node, "wrong_status")
    default = WrongStatusSettings()
    if m is None:
        return default
    status = read_int_choice(reader, m, "status", WRONG_STATUSES, default.status)
    header = m.choice("header", WRONG_STATUS_HEADERS, default.header)
    m.finish()
    return WrongStatusSettings(status, header)


class WrongStatus(AnswerRewriter):
    name = "wrong_status"
    config: WrongStatusSettings

    def rewrite(self, answer: Answer, facts: RequestFacts) -> tuple[Answer, str]:
        status, header = self.config.status, self.config.header
        headers = tuple((header if is_challenge_header(k) else k, v) for k, v in answer.headers)
        phrase = HTTPStatus(status).phrase
        body = answer.body.replace(f"{answer.status} {answer.reason_phrase}", f"{status} {phrase}", 1)
        for name in ("Proxy-Authenticate:", "WWW-Authenticate:"):
            body = body.replace(name, f"{header}:")
        reason = f"{status} with {header} instead of {answer.status}"
        return replace(answer, status=status, headers=headers, body=body, reason=phrase), reason


WRONG_STATUS = FaultKind(
    name="wrong_status",
    doc=(
        "The challenge goes out with this status and header name (by default 401 with `WWW-Authenticate`, "
        "what an origin server would send). Reproduces transparent or misconfigured proxies that challenge "
        "like a web server: clients then send `Authorization` instead of `Proxy-Authorization`, or offer the "
        "proxy password to the origin."
    ),
    keys=(
        Key("status", one_of(WRONG_STATUSES), "401", "the status of the challenge"),
        Key("header", one_of(WRONG_STATUS_HEADERS), "`WWW-Authenticate`", "the challenge's header name"),
    ),
    parse=parse_wrong_status,
    build=WrongStatus,
)

KINDS = (CHALLENGE_MISSING, CHALLENGE_MALFORMED, CLOSE_ON_407, BLOCK_PAGE_KIND, WRONG_STATUS)
