"""One proxy answer as capture records it, with every secret already removed.

The capture addon, mitmproxy flow files and HAR files all describe an answer
differently; each turns it into an ``Observation`` through
``make_observation``, which is the one place that drops credentials:
``Proxy-Authorization``/``Authorization`` values (only the scheme token is
kept, and the user name with ``keep_usernames``), cookies, and any echo of
them in the answer's headers or body. Pure: no mitmproxy import.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mitm407.wire.authparams import AuthParamError, Challenge, parse_challenge

REDACTED = "[redacted]"
CREDENTIAL_HEADERS = ("proxy-authorization", "authorization")
# Never recorded from answers: they carry per-client secrets or state.
DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "set-cookie",
        "set-cookie2",
        "cookie",
        "proxy-authorization",
        "authorization",
        "proxy-authentication-info",
        "content-encoding",  # bodies are recorded decoded
    }
)
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Observation:
    """A proxy's answer to one request; holds no secret."""

    kind: str  # "plain" or "connect"
    method: str
    url: str  # absolute URL without query; CONNECT: host:port
    host: str
    port: int
    credentials: str | None  # scheme of the Proxy-Authorization sent ("basic"), None if none
    user: str | None  # only with keep_usernames
    status: int
    reason: str
    headers: Headers
    body: str
    closed: bool | None  # the proxy closed the connection after answering (None: unknown)

    @property
    def refused(self) -> bool:
        return self.status in (401, 403, 407)

    def challenges(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "proxy-authenticate"]


def read_challenge(value: str) -> Challenge | None:
    """One ``Proxy-Authenticate`` value as a challenge (the one parser, ``wire.authparams``).

    None when the value is not exactly one well-formed challenge: capture then
    keeps it verbatim instead of guessing what a hostile or odd proxy meant.
    """
    try:
        return parse_challenge(value)
    except AuthParamError:
        return None


# -- secrets ---------------------------------------------------------------------


def credential_secrets(value: str, keep_usernames: bool) -> tuple[str | None, str | None, list[str]]:
    """(scheme, user or None, every string of the header that must never be recorded)."""
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    found = [value.strip(), token]
    user = None
    if scheme.lower() == "basic" and token:
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4)).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            decoded = ""
        name, sep, password = decoded.partition(":")
        if sep:
            found.append(password)
            user = name
    elif token:
        challenge = read_challenge(value)  # credentials have a challenge's grammar
        if challenge is not None:
            user = challenge.param("username")
            found += [v for k, v in challenge.params.items() if k in ("response", "cnonce", "nonce")]
    if user and not keep_usernames:
        found.append(user)
    return (scheme.lower() or None), (user if keep_usernames else None), found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Every secret (raw, percent-encoded, form-encoded) replaced by ``[redacted]``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            text = text.replace(form, REDACTED)
    return text


def decode_body(raw: bytes, headers: Headers) -> str:
    """Text of the answer: UTF-8 unless the Content-Type says otherwise."""
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    m = re.search(r"charset=\"?([\w-]+)", content_type, re.IGNORECASE)
    for encoding in ([m.group(1)] if m else []) + ["utf-8"]:
        try:
            return raw.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return raw.decode("iso-8859-1")


def make_observation(
    *,
    method: str,
    url: str,
    host: str,
    port: int,
    request_headers: Sequence[tuple[str, str]],
    status: int,
    reason: str,
    response_headers: Sequence[tuple[str, str]],
    body: bytes,
    closed: bool | None,
    keep_usernames: bool = False,
) -> Observation:
    """The one door into capture: what was asked and answered, secrets removed."""
    is_connect = method.upper() == "CONNECT"
    secrets: list[str] = []
    scheme = user = None
    for name, value in request_headers:
        lower = name.lower()
        if lower in CREDENTIAL_HEADERS:
            found_scheme, found_user, found = credential_secrets(value, keep_usernames)
            secrets += found
            if lower == "proxy-authorization" and scheme is None:
                scheme, user = found_scheme, found_user
        elif lower == "cookie":
            secrets += [value] + [part.partition("=")[2] for part in value.split(";")]
    kept = tuple(
        (name, scrub(value, secrets))
        for name, value in response_headers
        if name.lower() not in DROPPED_RESPONSE_HEADERS
    )
    return Observation(
        kind="connect" if is_connect else "plain",
        method=method.upper(),
        url=f"{host}:{port}" if is_connect else url.split("?", 1)[0],
        host=host.lower(),
        port=port,
        credentials=scheme,
        user=user,
        status=status,
        reason=reason,
        headers=kept,
        body=scrub(decode_body(body, kept), secrets),
        closed=closed,
    )
