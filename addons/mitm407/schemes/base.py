"""The contract every authentication scheme fulfils.

Schemes are sans-IO: they take header values and ``RequestFacts`` and return
an ``AuthResult``; they import nothing from mitmproxy, so they are tested
without a proxy. ``addon.py`` is the only glue.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any, Protocol

from mitm407.core.credentials import User
from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult
from mitm407.core.yamlnodes import Mapping, Reader


@dataclass(frozen=True)
class SchemeContext:
    """What a scheme is built from: one per scenario load."""

    realm: str
    users: MappingABC[str, User]
    options: Any = None  # what the scheme's ``parse_options`` returned
    cache_ttl: float = 300.0
    cache_size: int = 100_000
    clock: Callable[[], float] = field(default=time.monotonic)


class Scheme(Protocol):
    name: str  # as written in scenarios: "basic"
    token: str  # as on the wire: "Basic"
    connection_bound: bool  # success authenticates the client connection (NTLM)

    def challenges(self, facts: RequestFacts, stale: bool = False) -> list[str]:
        """``Proxy-Authenticate`` values this scheme offers, in order."""
        ...

    def verify(self, credentials: str, facts: RequestFacts) -> AuthResult:
        """Check the part of the header after the scheme token."""
        ...

    def connection_closed(self, connection_id: str) -> None:
        """Forget any handshake state of a closed client connection."""
        ...


class SlowSecretScheme(Scheme, Protocol):
    """A scheme whose check may cost a slow hash (Basic with bcrypt users).

    The addon asks ``slow_check_pending`` before deciding; when true it runs
    ``slow_check`` in a worker thread and hands the answer to ``remember`` on
    the event loop thread, so ``verify`` then hits the cache.
    """

    has_slow_secrets: bool

    def slow_check_pending(self, credentials: str) -> bool: ...

    def slow_check(self, credentials: str) -> tuple[AuthResult, bool]: ...

    def remember(self, credentials: str, checked: tuple[AuthResult, bool]) -> None: ...


OptionsParser = Callable[[Reader, "Mapping | None"], Any]


@dataclass(frozen=True)
class SchemeSpec:
    """A registry entry: how to read a scheme's scenario section and build it."""

    name: str
    token: str
    parse_options: OptionsParser
    build: Callable[[SchemeContext], Scheme]
    needs_cleartext: bool = False  # htpasswd hashes cannot serve it (Digest, NTLM)
    # Secret kinds besides cleartext that serve it anyway (Digest: an htdigest HA1).
    secret_kinds: frozenset[str] = frozenset()
