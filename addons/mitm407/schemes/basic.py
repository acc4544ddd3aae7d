"""Basic authentication (RFC 7617) with a verified-credentials cache.

mitmproxy's built-in option splits the decoded credentials on every colon
and runs bcrypt on every request. Here the password is split on the first
colon only, UTF-8 is declared and accepted, comparisons are constant-time, and
a successful check is cached under a keyed hash of the whole credentials
token, so a wrong password can never hit a cached success and the per-request
path of a known client is a dictionary lookup. A wrong password checked against
a slow hash is cached as a refusal, so a client retrying it costs no bcrypt.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass

from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.users import watch_users
from mitm407.core.yamlnodes import Mapping, Reader
from mitm407.schemes.base import SchemeContext, SchemeSpec
from mitm407.wire.basic import BasicCredentialsError, parse_basic_credentials
from mitm407.wire.terminal import printable


def build_basic_challenge(realm: str, charset: bool = True) -> str:
    """``Basic realm="..."`` with quotes and backslashes escaped (RFC 9110 §5.6.4)."""
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{quoted}"' + (', charset="UTF-8"' if charset else "")


@dataclass(frozen=True)
class BasicOptions:
    charset: bool = True  # advertise charset="UTF-8" (RFC 7617 §2.1)


def parse_options(reader: Reader, section: Mapping | None) -> BasicOptions:
    if section is None:
        return BasicOptions()
    options = BasicOptions(charset=section.boolean("charset", True))
    section.finish()
    return options


class BasicScheme:
    name = "basic"
    token = "Basic"
    connection_bound = False

    def __init__(self, context: SchemeContext) -> None:
        self.context = context
        self.options: BasicOptions = context.options or BasicOptions()
        self._challenge = build_basic_challenge(context.realm, self.options.charset)
        self._key = os.urandom(32)
        # keyed hash of the token -> (result, expiry): successes, and refusals that cost a slow hash.
        # OrderedDict: evicting the oldest is O(1) (a dict's first key is not, after many deletes).
        self._verified: OrderedDict[bytes, tuple[AuthResult, float]] = OrderedDict()
        # No slow secret, no slow check to move off the event loop: one attribute read per request.
        self.has_slow_secrets = any(user.secret.slow for user in context.users.values())
        watch_users(context.users, self.users_changed)

    def users_changed(self, names: frozenset[str]) -> None:
        """A rotation changed passwords: a cached success may now be wrong, so the cache goes."""
        self._verified.clear()
        self.has_slow_secrets = any(user.secret.slow for user in self.context.users.values())

    def challenges(self, facts: RequestFacts, stale: bool = False) -> list[str]:
        return [self._challenge]

    def _cache_key(self, credentials: str) -> bytes:
        return hashlib.blake2b(credentials.encode("utf-8", "surrogateescape"), key=self._key, digest_size=16).digest()

    def verify(self, credentials: str, facts: RequestFacts) -> AuthResult:
        now = self.context.clock()
        key = self._cache_key(credentials)
        hit = self._verified.get(key)
        if hit is not None:
            if hit[1] > now:
                return hit[0]
            del self._verified[key]
        result, slow = self._check(credentials)
        self._remember(key, result, slow, now)
        return result

    def slow_check_pending(self, credentials: str) -> bool:
        """Would ``verify`` run a slow hash (bcrypt) for these credentials now?

        True only for a known user whose secret is slow and whose token is not
        cached (or expired): the addon then runs ``slow_check`` in a worker
        thread first, so the proxy's event loop never waits ~50 ms for bcrypt.
        Without any slow secret it answers at once; otherwise the cache is
        looked up first, so a known client costs one keyed hash.
        """
        if not self.has_slow_secrets:
            return False
        hit = self._verified.get(self._cache_key(credentials))
        if hit is not None and hit[1] > self.context.clock():
            return False
        try:
            user, _ = parse_basic_credentials(credentials)
        except BasicCredentialsError:
            return False
        entry = self.context.users.get(user)
        return entry is not None and entry.secret.slow

    def slow_check(self, credentials: str) -> tuple[AuthResult, bool]:
        """The uncached check (result, whether it cost a slow hash); touches no mutable state.

        Safe in a worker thread: it reads only the scheme's frozen users. Hand
        its answer to ``remember`` back on the event loop thread, which alone
        touches the cache.
        """
        return self._check(credentials)

    def remember(self, credentials: str, checked: tuple[AuthResult, bool]) -> None:
        """Cache what ``slow_check`` found exactly as ``verify`` would have: verify then hits it."""
        self._remember(self._cache_key(credentials), *checked, self.context.clock())

    def _remember(self, key: bytes, result: AuthResult, slow: bool, now: float) -> None:
        # Successes, and refusals that cost a slow hash: a client retrying a wrong password
        # would run bcrypt (~50 ms of CPU) on every request. A cached refusal stays a
        # refusal; the key covers the whole token, so any change re-checks.
        if result.result is Result.OK or slow:
            if key not in self._verified and len(self._verified) >= self.context.cache_size:
                self._verified.popitem(last=False)  # oldest first
            self._verified[key] = (result, now + self.context.cache_ttl)

    def _check(self, credentials: str) -> tuple[AuthResult, bool]:
        """The result, and whether it cost a slow hash."""
        try:
            user, password = parse_basic_credentials(credentials)
        except BasicCredentialsError as e:
            return AuthResult(Result.MALFORMED, str(e), "basic"), False
        shown = printable(user)
        entry = self.context.users.get(user)
        if entry is None:
            return AuthResult(Result.UNKNOWN_USER, f"unknown user '{shown}'", "basic", shown), False
        if not entry.secret.verify(password):
            refused = AuthResult(Result.BAD_CREDENTIALS, f"wrong password for user '{shown}'", "basic", shown)
            return refused, entry.secret.slow
        return AuthResult(Result.OK, f"valid Basic credentials for '{shown}'", "basic", user), entry.secret.slow

    def connection_closed(self, connection_id: str) -> None:
        pass


SPEC = SchemeSpec(name="basic", token="Basic", parse_options=parse_options, build=BasicScheme)
