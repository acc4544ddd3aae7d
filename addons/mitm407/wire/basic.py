"""Basic credentials (RFC 7617) as they travel: ``base64(user ":" password)``.

Syntax only, with no users or scenario: the Basic scheme checks what this decodes,
and the hop log decodes a leaked header to name its user (never its password).
"""

from __future__ import annotations

import binascii

from mitm407.wire.authparams import MAX_CREDENTIALS


class BasicCredentialsError(ValueError):
    """The credentials token is not ``base64(user ":" password)``."""


def parse_basic_credentials(token: str) -> tuple[str, str]:
    """Decode a Basic token into (user, password).

    RFC 7617 §2: the user-id cannot contain a colon, the password may; split on
    the first one. UTF-8 is what we advertise (``charset="UTF-8"``); bytes that
    are not UTF-8 are read as ISO-8859-1, as legacy clients send them.
    """
    token = token.strip()
    if not token:
        raise BasicCredentialsError("empty Basic credentials")
    if len(token) > MAX_CREDENTIALS:
        raise BasicCredentialsError(f"Basic credentials too long ({len(token)} characters)")
    try:
        raw = binascii.a2b_base64(token + "=" * (-len(token) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        raise BasicCredentialsError("Basic credentials are not valid base64") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("iso-8859-1")
    user, sep, password = text.partition(":")
    if not sep:
        raise BasicCredentialsError("Basic credentials have no ':' between user and password")
    return user, password
