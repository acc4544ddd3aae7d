"""What an authentication decision may look at, free of mitmproxy types.

Rules and schemes take a ``RequestFacts`` instead of a flow so that they stay
pure and testable without a proxy; ``addon.py`` builds it once per request.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestFacts:
    method: str  # upper-case, "CONNECT" for tunnels
    target: str  # request-target as sent: Digest's ``uri`` must equal it ("" if nothing reads it: Gate.needs_target)
    host: str  # lower-case, no brackets
    port: int
    path: str  # "" for CONNECT
    client_ip: str
    connection_id: str  # the client connection: NTLM binds to it
    is_connect: bool = False
    body: bytes | None = None  # only when a scheme needs it (Digest auth-int)
