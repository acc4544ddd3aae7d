"""HTTP authentication syntax (RFC 9110 §11): challenges, credentials, auth-params.

A pure parser for the grammar every scheme shares::

    challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param  = token BWS "=" BWS ( token / quoted-string )
    token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="

and the matching builders. Clients and proxies get this wrong in interesting
ways (commas inside quoted realms, escaped quotes, a scheme name that looks
like a parameter), so one careful implementation serves Digest, the hop log's
reading of upstream challenges, and anything else that reads these headers.
Every malformed input raises ``AuthParamError``: callers turn it into a 407,
never a crash. Sizes are bounded before any work is done.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import NamedTuple

MAX_INPUT = 16 * 1024  # characters of one header value
MAX_PARAMS = 64  # auth-params in one challenge or credentials
MAX_VALUE = 4096  # characters of one parameter value

# RFC 9110 §5.6.2: tchar
TCHAR = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
TOKEN68_CHARS = frozenset("-._~+/" + string.ascii_letters + string.digits)
_OWS = " \t"
# The same character classes as regular expressions: the scanner consumes runs of them in C, not a
# character at a time in Python (Digest parses every request's credentials).
_TOKEN_RUN = re.compile(r"[!#$%&'*+\-.^_`|~A-Za-z0-9]*")
_TOKEN68_RUN = re.compile(r"[\-._~+/A-Za-z0-9]*")
_OWS_RUN = re.compile(r"[ \t]*")
_QDTEXT_RUN = re.compile(r'[^"\\\x00-\x08\x0a-\x1f\x7f]*')  # neither quote, backslash nor control
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# One well-formed ``auth-param`` and its list separator: the fast path of ``parse_auth_params``.
_SIMPLE_PARAM = re.compile(
    r"[ \t]*([!#$%&'*+\-.^_`|~A-Za-z0-9]+)[ \t]*=[ \t]*"
    r'(?:"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*)"|([!#$%&\'*+\-.^_`|~A-Za-z0-9]+))'
    r"[ \t]*(?:,|\Z)"
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


class AuthParamError(ValueError):
    """A challenge or credentials value that does not follow RFC 9110 §11."""


class Challenge(NamedTuple):
    """One challenge (or credentials): the scheme and either a token68 or params.

    ``scheme`` keeps its spelling; compare it case-insensitively. ``params``
    has lower-cased names (RFC 9110 §11.2: "case-insensitive") and unquoted
    values, in the order sent.
    """

    scheme: str
    token68: str | None
    params: dict[str, str]

    def param(self, name: str) -> str | None:
        """A parameter's value by name (any case), None when absent."""
        return self.params.get(name.lower())


class _Scanner:
    """A cursor over one header value; each method consumes one grammar item."""

    def __init__(self, text: str, max_params: int, max_value: int) -> None:
        if len(text) > MAX_INPUT:
            raise AuthParamError(f"header value too long ({len(text)} characters, limit {MAX_INPUT})")
        self.text = text
        self.pos = 0
        self.max_params = max_params
        self.max_value = max_value

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ows(self) -> None:
        self.pos = _OWS_RUN.match(self.text, self.pos).end()

    def skip_list_separators(self) -> None:
        """``OWS *( "," OWS )``: empty list elements are allowed (RFC 9110 §5.6.1.2)."""
        self.skip_ows()
        while self.peek() == ",":
            self.pos += 1
            self.skip_ows()

    def token(self) -> str:
        start = self.pos
        self.pos = _TOKEN_RUN.match(self.text, start).end()
        return self.text[start : self.pos]

    def quoted_string(self) -> str:
        """``DQUOTE *( qdtext / quoted-pair ) DQUOTE``, returned unescaped."""
        assert self.peek() == '"'
        self.pos += 1
        out: list[str] = []
        size = 0
        while True:
            run = _QDTEXT_RUN.match(self.text, self.pos)
            if run.end() > self.pos:  # plain characters, in one piece
                out.append(run.group())
                size += run.end() - self.pos
                self.pos = run.end()
                if size > self.max_value:
                    raise AuthParamError(f"parameter value too long (limit {self.max_value} characters)")
            ch = self.peek()
            if not ch:
                raise AuthParamError("unterminated quoted string")
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                ch = self.peek()
                if not ch:
                    raise AuthParamError("unterminated quoted string (ends with a backslash)")
                self.pos += 1
            if ch != "\t" and (ord(ch) < 0x20 or ord(ch) == 0x7F):
                raise AuthParamError(f"control character 0x{ord(ch):02x} in a quoted string")
            out.append(ch)
            size += 1
            if size > self.max_value:
                raise AuthParamError(f"parameter value too long (limit {self.max_value} characters)")

    def looks_like_param(self) -> bool:
        """Is the cursor at ``token BWS "="`` not followed by another "=" (a token68's padding)?"""
        save = self.pos
        try:
            if not self.token():
                return False
            self.skip_ows()
            if self.peek() != "=":
                return False
            self.pos += 1
            self.skip_ows()
            return self.peek() not in ("=", ",", "")
        finally:
            self.pos = save

    def param(self, params: dict[str, str]) -> None:
        name = self.token().lower()
        self.skip_ows()
        self.pos += 1  # "=", checked by looks_like_param
        self.skip_ows()
        if self.peek() == '"':
            value = self.quoted_string()
        else:
            value = self.token()
            if not value:
                raise AuthParamError(f"parameter '{name}' has no value (expected a token or a quoted string)")
            if len(value) > self.max_value:
                raise AuthParamError(f"parameter value too long (limit {self.max_value} characters)")
        if name in params:
            raise AuthParamError(f"parameter '{name}' appears twice")
        if len(params) >= self.max_params:
            raise AuthParamError(f"more than {self.max_params} parameters")
        params[name] = value
        self.skip_ows()
        if not self.at_end() and self.peek() != ",":
            raise AuthParamError(f"unexpected {self.peek()!r} after parameter '{name}'")

    def token68(self) -> str | None:
        """A token68 that ends the element (followed by OWS and "," or the end), else None."""
        start = self.pos
        self.pos = _TOKEN68_RUN.match(self.text, start).end()
        if self.pos == start:
            return None
        while self.peek() == "=":
            self.pos += 1
        end = self.pos
        self.skip_ows()
        if self.at_end() or self.peek() == ",":
            return self.text[start:end]
        self.pos = start
        return None

    def params(self, params: dict[str, str], first: bool) -> None:
        """``#auth-param`` until the end or the start of the next challenge."""
        while True:
            save = self.pos
            self.skip_list_separators()
            if self.at_end():
                return
            if not self.looks_like_param():
                if first:
                    raise AuthParamError(f"expected a parameter (name=value) at character {self.pos + 1}")
                self.pos = save  # the next challenge's scheme
                return
            self.param(params)
            first = False

    def challenge(self) -> Challenge:
        self.skip_list_separators()
        scheme = self.token()
        if not scheme:
            where = f"{self.peek()!r}" if self.peek() else "the end"
            raise AuthParamError(f"expected an authentication scheme name, found {where}")
        params: dict[str, str] = {}
        if self.at_end() or self.peek() == ",":
            return Challenge(scheme, None, params)
        if self.peek() != " ":
            raise AuthParamError(f"unexpected {self.peek()!r} after scheme '{scheme}'")
        self.skip_ows()
        if self.at_end() or self.peek() == ",":
            return Challenge(scheme, None, params)
        if not self.looks_like_param():
            token68 = self.token68()
            if token68 is None:
                raise AuthParamError(f"expected parameters or a token68 after scheme '{scheme}'")
            return Challenge(scheme, token68, params)
        self.params(params, first=True)
        return Challenge(scheme, None, params)


def parse_challenges(
    value: str | Iterable[str], max_params: int = MAX_PARAMS, max_value: int = MAX_VALUE
) -> list[Challenge]:
    """Every challenge of one or several ``(Proxy-|WWW-)Authenticate`` values, in order.

    RFC 9110 §11.6.1: a header value may hold several challenges separated by
    commas, and a recipient must treat repeated header lines as one list.
    """
    values = [value] if isinstance(value, str) else list(value)
    out: list[Challenge] = []
    for text in values:
        scanner = _Scanner(text, max_params, max_value)
        while True:
            scanner.skip_list_separators()
            if scanner.at_end():
                break
            out.append(scanner.challenge())
    return out


def parse_credentials(value: str, max_params: int = MAX_PARAMS, max_value: int = MAX_VALUE) -> Challenge:
    """One ``(Proxy-)Authorization`` value: exactly one scheme with its token68 or params."""
    scanner = _Scanner(value.strip(_OWS), max_params, max_value)
    credentials = scanner.challenge()
    scanner.skip_list_separators()
    if not scanner.at_end():
        raise AuthParamError("credentials hold more than one scheme")
    return credentials


def parse_challenge(value: str, max_params: int = MAX_PARAMS, max_value: int = MAX_VALUE) -> Challenge:
    """One header value that must hold exactly one challenge (capture maps each header to a scheme).

    The grammar of one challenge is that of credentials (RFC 9110 §11.3, §11.4).
    """
    return parse_credentials(value, max_params, max_value)


def _simple_auth_params(text: str, max_params: int, max_value: int) -> dict[str, str] | None:
    """The params of a value written the usual way (``a="x", b=y``), else None: the scanner decides.

    Digest parses every request's credentials; this reads the common case with
    one regular expression per parameter. Anything unusual (empty list
    elements, a duplicate, a limit reached, junk) goes to ``_Scanner``, which
    gives the exact result or error.
    """
    if len(text) > MAX_INPUT:
        return None
    params: dict[str, str] = {}
    pos, end = 0, len(text)
    while pos < end:
        m = _SIMPLE_PARAM.match(text, pos)
        if m is None or m.end() == pos:
            return None
        name, quoted, token = m.group(1).lower(), m.group(2), m.group(3)
        value = token if quoted is None else (_QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted)
        if name in params or len(params) >= max_params or len(value) > max_value:
            return None
        params[name] = value
        if m.end() == end and text.endswith(","):
            return None  # a trailing comma: the scanner's business
        pos = m.end()
    return params


def parse_auth_params(text: str, max_params: int = MAX_PARAMS, max_value: int = MAX_VALUE) -> dict[str, str]:
    """``#auth-param`` alone: the part of credentials after the scheme name."""
    simple = _simple_auth_params(text, max_params, max_value)
    if simple is not None:
        return simple
    scanner = _Scanner(text, max_params, max_value)
    params: dict[str, str] = {}
    scanner.params(params, first=True)
    scanner.skip_list_separators()
    if not scanner.at_end():
        raise AuthParamError(f"unexpected {scanner.peek()!r} at character {scanner.pos + 1}")
    return params


def quote_string(value: str) -> str:
    """RFC 9110 §5.6.4 quoted-string: backslash-escape ``"`` and ``\\``; no control characters."""
    control = _CONTROL.search(value)
    if control is not None:
        raise AuthParamError(f"control character 0x{ord(control.group()):02x} cannot be sent in a quoted string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_token(value: str) -> bool:
    return _TOKEN_RUN.fullmatch(value) is not None and bool(value)


def format_param(name: str, value: str, quoted: bool = True) -> str:
    """``name="value"``, or ``name=value`` when ``quoted`` is False (value must be a token)."""
    if not is_token(name):
        raise AuthParamError(f"parameter name {name!r} is not a token")
    if quoted:
        return f"{name}={quote_string(value)}"
    if not is_token(value):
        raise AuthParamError(f"value {value!r} of '{name}' is not a token and must be quoted")
    return f"{name}={value}"


def format_challenge(scheme: str, params: Iterable[str]) -> str:
    """``Scheme p1, p2``: ``params`` are already formatted by ``format_param``."""
    joined = ", ".join(params)
    return f"{scheme} {joined}" if joined else scheme


MAX_CREDENTIALS = 16 * 1024  # longer Proxy-Authorization values are refused unparsed


def split_authorization(value: str) -> tuple[str, str]:
    """``"Basic  abc=="`` -> ``("basic", "abc==")``: scheme lower-cased, spaces tolerated."""
    token, _, rest = value.strip().partition(" ")
    return token.lower(), rest.strip()
