"""A Digest client written from RFC 7616 §3.4 by hand, for tests.

Independent of ``mitm407.schemes.digest`` on purpose: a wrong formula there
must make the tests fail, not agree with itself.
"""

from __future__ import annotations

import hashlib
import re

HASHLIB = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


PARAM = re.compile(r'(\w+)="?([^",]*)"?')


def params_of(value: str) -> dict[str, str]:
    """The auth-params of a challenge or of ``Proxy-Authentication-Info`` (simple: no commas inside quotes)."""
    return dict(PARAM.findall(value))


def H(algorithm: str, text: str) -> str:
    return hashlib.new(HASHLIB[algorithm.removesuffix("-sess")], text.encode()).hexdigest()


def answer(
    *,
    user: str,
    password: str,
    realm: str,
    nonce: str,
    uri: str,
    method: str = "GET",
    algorithm: str = "MD5",
    qop: str | None = "auth",
    nc: str = "00000001",
    cnonce: str = "0a4f113b",
    body: bytes = b"",
    opaque: str | None = None,
    userhash: bool = False,
    extra: str = "",
) -> str:
    """A client's Digest credentials (the part after "Digest "), written from RFC 7616 §3.4 by hand."""
    ha1 = H(algorithm, f"{user}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        ha1 = H(algorithm, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        body_hash = hashlib.new(HASHLIB[algorithm.removesuffix("-sess")], body).hexdigest()
        ha2 = H(algorithm, f"{method}:{uri}:{body_hash}")
    else:
        ha2 = H(algorithm, f"{method}:{uri}")
    if qop is None:
        response = H(algorithm, f"{ha1}:{nonce}:{ha2}")
    else:
        response = H(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    name = H(algorithm, f"{user}:{realm}") if userhash else user
    parts = [f'username="{name}"', f'realm="{realm}"', f'uri="{uri}"', f"algorithm={algorithm}"]
    parts += [f'nonce="{nonce}"', f'response="{response}"']
    if qop is not None:
        parts += [f"nc={nc}", f'cnonce="{cnonce}"', f"qop={qop}"]
    if opaque is not None:
        parts.append(f'opaque="{opaque}"')
    if userhash:
        parts.append("userhash=true")
    return ", ".join(parts) + extra
