"""The one value that says how authentication of a request went.

A scheme produces an ``AuthResult``; the 407 builder, the denial log line, the
hop log and the mitmweb comment all read it, so no second place decides the
reason. It never holds a secret: ``reason`` is written for logs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class Result(StrEnum):
    """Outcome of authenticating one request (the hop log's ``auth.result``)."""

    OK = "ok"
    MISSING = "missing"
    MALFORMED = "malformed"
    UNKNOWN_USER = "unknown-user"
    BAD_CREDENTIALS = "bad-credentials"
    STALE = "stale"  # Digest nonce expired: retry without asking the user again
    CONTINUE = "continue"  # a multi-leg handshake (NTLM) wants another round
    BYPASS = "bypass"  # a rule said no authentication is needed
    DENIED = "denied"  # a rule (or a fault) refuses the request outright
    ERROR = "error"  # this proxy failed while deciding: answered 500, never forwarded


@dataclass(frozen=True, slots=True)
class AuthResult:
    """How one request fared. ``reason`` is human-readable and secret-free."""

    result: Result
    reason: str
    scheme: str | None = None
    user: str | None = None
    # Extra response headers a scheme wants sent: on a CONTINUE the handshake's
    # next challenge, on OK e.g. Proxy-Authentication-Info.
    headers: tuple[tuple[str, str], ...] = ()
    # OK from a connection-bound scheme (NTLM): the addon then trusts the whole
    # client connection; on later requests: authenticated by its connection.
    via_connection: bool = False

    @property
    def ok(self) -> bool:
        return self.result in (Result.OK, Result.BYPASS)

    def with_reason(self, reason: str) -> AuthResult:
        return replace(self, reason=reason)

    def as_log(self) -> dict[str, str | None]:
        """The hop-log ``auth`` object."""
        return {"scheme": self.scheme, "user": self.user, "result": self.result.value, "reason": self.reason}
