"""Digest authentication (RFC 7616), the whole RFC, so QA sees which client breaks where.

Squid offers MD5 only; here every algorithm of RFC 7616 §3.2 (MD5, SHA-256,
SHA-512-256 and their ``-sess`` variants), ``qop=auth`` and ``auth-int``,
legacy RFC 2069 responses (no qop), ``userhash`` (§3.4.4), ``opaque``,
``domain``, ``charset=UTF-8`` and ``Proxy-Authentication-Info`` (§3.5).

State is bounded: nonces are self-validating (timestamp, salt and a keyed-BLAKE2s MAC
under a per-process key), so issuing one stores nothing; only the ``nc``
counters of nonces in use live in an LRU of fixed size. HA1 values are
computed once per scenario load, so a request costs a few hashes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import struct
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from mitm407.core.credentials import User
from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.users import watch_users
from mitm407.core.yamlnodes import Mapping, Reader
from mitm407.schemes.base import SchemeContext, SchemeSpec
from mitm407.wire.authparams import MAX_CREDENTIALS, AuthParamError, format_challenge, format_param, parse_auth_params
from mitm407.wire.terminal import printable


class Algorithm(NamedTuple):
    """An RFC 7616 §3.2 algorithm: its hash and whether HA1 is per session."""

    name: str  # as on the wire
    family: str  # the hash, shared by NAME and NAME-sess: HA1 and userhash tables are per family
    hash: Callable[[bytes], str]
    sess: bool


def _hasher(name: str) -> Callable[[bytes], str]:
    # hashlib's named constructors (md5, sha256) skip the name lookup of hashlib.new: twice per request
    construct = getattr(hashlib, name, None) or functools.partial(hashlib.new, name)
    return lambda data: construct(data).hexdigest()


# RFC 7616 §6.1 registry. Dispatch table, as httpx's _ALGORITHM_TO_HASH_FUNCTION.
ALGORITHMS: dict[str, Algorithm] = {
    name: Algorithm(name, family, _hasher(hashname), name.endswith("-sess"))
    for name, family, hashname in (
        ("MD5", "MD5", "md5"),
        ("MD5-sess", "MD5", "md5"),
        ("SHA-256", "SHA-256", "sha256"),
        ("SHA-256-sess", "SHA-256", "sha256"),
        ("SHA-512-256", "SHA-512-256", "sha512_256"),
        ("SHA-512-256-sess", "SHA-512-256", "sha512_256"),
    )
}
_BY_LOWER = {name.lower(): algorithm for name, algorithm in ALGORITHMS.items()}
QOPS = ("auth", "auth-int")
NC_PATTERN = re.compile(r"[0-9a-fA-F]{8}")
DEFAULT_PORTS = {"http": 80, "https": 443}


# -- the RFC 7616 §3.4.1 computations, pure ----------------------------------------


def compute_ha1(algorithm: Algorithm, user: str, realm: str, password: str) -> str:
    """``H(username ":" realm ":" passwd)`` over UTF-8 (the charset we declare)."""
    return algorithm.hash(f"{user}:{realm}:{password}".encode())


def session_ha1(algorithm: Algorithm, ha1: str, nonce: str, cnonce: str) -> str:
    """``-sess`` variants: ``H(H(user:realm:passwd) ":" nonce ":" cnonce)``; else HA1 itself."""
    return algorithm.hash(f"{ha1}:{nonce}:{cnonce}".encode()) if algorithm.sess else ha1


def compute_ha2(algorithm: Algorithm, method: str, uri: str, qop: str | None, body: bytes | None) -> str:
    """``H(method ":" uri)``, or ``H(method ":" uri ":" H(entity-body))`` for auth-int."""
    if qop == "auth-int":
        return algorithm.hash(f"{method}:{uri}:{algorithm.hash(body or b'')}".encode())
    return algorithm.hash(f"{method}:{uri}".encode())


def compute_response(
    algorithm: Algorithm,
    ha1: str,
    nonce: str,
    nc: str | None,
    cnonce: str | None,
    qop: str | None,
    method: str,
    uri: str,
    body: bytes | None = None,
) -> str:
    """The ``response`` (or, with an empty method, ``rspauth``) value for a known HA1.

    With qop: ``KD(HA1, nonce:nc:cnonce:qop:HA2)``; without (RFC 2069):
    ``KD(HA1, nonce:HA2)``.
    """
    ha1 = session_ha1(algorithm, ha1, nonce, cnonce or "")
    ha2 = compute_ha2(algorithm, method, uri, qop, body)
    if qop is None:
        return algorithm.hash(f"{ha1}:{nonce}:{ha2}".encode())
    return algorithm.hash(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


def compute_userhash(algorithm: Algorithm, user: str, realm: str) -> str:
    """RFC 7616 §3.4.4: ``H(unq(username) ":" unq(realm))``."""
    return algorithm.hash(f"{user}:{realm}".encode())


def decode_ext_value(value: str) -> str:
    """RFC 8187 ``username*``: ``UTF-8''percent-encoded``; other charsets are refused."""
    charset, sep, rest = value.partition("'")
    _language, sep2, encoded = rest.partition("'")
    if not sep or not sep2 or charset.lower() != "utf-8":
        raise AuthParamError("username* must be UTF-8''percent-encoded (RFC 8187)")
    try:
        return urllib.parse.unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        raise AuthParamError("username* is not valid UTF-8") from None


# -- nonces and replay -------------------------------------------------------------

# One key per process: nonces survive a scenario reload, not a restart.
PROCESS_KEY = os.urandom(32)
_NONCE = struct.Struct(">Q8s16s")  # milliseconds, salt, MAC


class NonceState(Enum):
    FRESH = "fresh"
    EXPIRED = "expired"
    FORGED = "forged"  # not issued by this process (or damaged)


class RandomPool:
    """``os.urandom`` in pieces of ``size`` bytes, read 4 KiB at a time.

    Digest issues a nonce with every 407 and a ``nextnonce`` with every accepted
    request: one system call per 512 nonces instead of one per nonce.
    """

    def __init__(self, size: int, block: int = 4096) -> None:
        self.size, self.block = size, block
        self.buffer, self.offset = b"", 0

    def take(self) -> bytes:
        if self.offset + self.size > len(self.buffer):
            self.buffer, self.offset = os.urandom(self.block), 0
        piece = self.buffer[self.offset : self.offset + self.size]
        self.offset += self.size
        return piece


class NonceMint:
    """Issues and checks self-validating nonces: ``base64url(ms | salt | MAC)``, MAC a keyed BLAKE2s.

    ``salt`` is the one source of randomness: tests pin it (and ``clock``) to
    get exact, repeatable challenges.
    """

    def __init__(
        self,
        ttl: float,
        clock: Callable[[], float],
        key: bytes = PROCESS_KEY,
        salt: Callable[[], bytes] | None = None,
    ) -> None:
        self.ttl, self.clock, self.key = ttl, clock, key
        self.salt = salt or RandomPool(8).take

    def _mac(self, stamp: int, salt: bytes) -> bytes:
        # keyed BLAKE2s is a MAC by design (RFC 7693, keyed mode) and about 3x cheaper than HMAC-SHA-256
        # here; it runs twice per accepted request (check the nonce, mint the nextnonce)
        return hashlib.blake2s(struct.pack(">Q", stamp) + salt, key=self.key, digest_size=16).digest()

    def issue(self) -> str:
        stamp = int(self.clock() * 1000)
        salt = self.salt()
        return base64.urlsafe_b64encode(_NONCE.pack(stamp, salt, self._mac(stamp, salt))).decode().rstrip("=")

    def check(self, nonce: str) -> tuple[NonceState, float]:
        """(state, age in seconds); the age is 0 for a forged nonce."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return NonceState.FORGED, 0.0
        if len(raw) != _NONCE.size:
            return NonceState.FORGED, 0.0
        stamp, salt, mac = _NONCE.unpack(raw)
        if not hmac.compare_digest(mac, self._mac(stamp, salt)):
            return NonceState.FORGED, 0.0
        age = self.clock() - stamp / 1000
        if age < -1.0:  # from the future: another clock, i.e. forged or pre-restart
            return NonceState.FORGED, 0.0
        return (NonceState.EXPIRED if age > self.ttl else NonceState.FRESH), age


class NcStore:
    """Highest ``nc`` accepted per nonce, in an LRU of ``size`` nonces.

    RFC 7616 §3.4: the server checks that nc grows, to detect replays. A nonce
    evicted from the store starts over (a replay of it goes unnoticed until it
    expires): the price of bounded memory, documented in the README.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._last: OrderedDict[str, int] = OrderedDict()

    def accept(self, nonce: str, nc: int) -> bool:
        """Record ``nc`` for ``nonce`` if it is higher than any before; False for a replay."""
        last = self._last.get(nonce)
        if last is not None and nc <= last:
            return False
        self._last[nonce] = nc
        self._last.move_to_end(nonce)
        while len(self._last) > self.size:
            self._last.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._last)


# -- scenario section ----------------------------------------------------------------


@dataclass(frozen=True)
class DigestOptions:
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")  # RFC 7616 §3.7: most preferred first
    qop: tuple[str, ...] = ("auth",)
    rfc2069: bool = False  # also accept responses without qop (RFC 2069 clients)
    nonce_ttl: float = 300.0
    userhash: bool = False
    opaque: str | None = None
    domain: tuple[str, ...] = ()
    charset: bool = True  # charset=UTF-8 (RFC 7616 §4)
    nc_store_size: int = 10_000


def parse_options(reader: Reader, section: Mapping | None) -> DigestOptions:
    if section is None:
        return DigestOptions()
    defaults = DigestOptions()
    algorithms = section.choice_list("algorithms", tuple(ALGORITHMS), defaults.algorithms)
    if "algorithms" in section and not algorithms:
        reader.error(section.get("algorithms") or section.node, "'algorithms' must list at least one algorithm")
    qop = section.choice_list("qop", QOPS, defaults.qop)
    rfc2069 = section.boolean("rfc2069", defaults.rfc2069)
    if not qop and not rfc2069:
        reader.error(
            section.get("qop") or section.node, "'qop' is empty and 'rfc2069' is false: no client could answer"
        )
    opaque = section.text("opaque")
    options = DigestOptions(
        algorithms=algorithms or defaults.algorithms,
        qop=qop,
        rfc2069=rfc2069,
        nonce_ttl=section.number("nonce_ttl", defaults.nonce_ttl, minimum=1) or defaults.nonce_ttl,
        userhash=section.boolean("userhash", defaults.userhash),
        opaque=opaque,
        domain=section.text_list("domain"),
        charset=section.boolean("charset", defaults.charset),
        nc_store_size=section.integer("nc_store_size", defaults.nc_store_size, minimum=1) or 1,
    )
    for text, key in [(opaque, "opaque"), *((d, "domain") for d in options.domain)]:
        if text is not None and any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
            reader.error(section.get(key) or section.node, f"'{key}' contains a control character")
    section.finish()
    return options


# -- the scheme ------------------------------------------------------------------------


def request_target_matches(uri: str, facts: RequestFacts) -> bool:
    """RFC 7616 §3.4.6: ``uri`` must name the request-target.

    Clients differ: curl sends the origin-form path even to a proxy, urllib
    the absolute URI it put on the request line. mitmproxy hands the addon
    the path either way, so an absolute ``uri`` is compared by parts (scheme
    and host case-folded, default port filled in) with the request's host,
    port and path.
    """
    if uri == facts.target or (facts.path and uri == facts.path):
        return True
    if facts.is_connect:
        return uri.lower() == facts.target.lower()
    theirs = urllib.parse.urlsplit(uri)
    scheme = theirs.scheme.lower()
    if scheme not in DEFAULT_PORTS or not theirs.netloc:
        return False
    try:
        port = theirs.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return False
    path = (theirs.path or "/") + (f"?{theirs.query}" if theirs.query else "")
    return (theirs.hostname or "") == facts.host and port == facts.port and path == facts.path


class DigestScheme:
    name = "digest"
    token = "Digest"
    connection_bound = False

    def __init__(self, context: SchemeContext) -> None:
        self.context = context
        self.options: DigestOptions = context.options or DigestOptions()
        self.realm = context.realm
        self.algorithms = tuple(ALGORITHMS[name] for name in self.options.algorithms)
        self.nonces = NonceMint(self.options.nonce_ttl, context.clock)
        self.replays = NcStore(self.options.nc_store_size)
        self._families = {a.family: a for a in self.algorithms}
        # HA1 per (hash family, user), computed once here (and on a rotation) and never per request.
        self._ha1: dict[tuple[str, str], str] = {}
        # userhash -> user name, per hash family (RFC 7616 §3.4.4)
        self._by_userhash: dict[str, dict[str, str]] = {family: {} for family in self._families}
        for user in context.users.values():
            self._derive(user)
        watch_users(context.users, self.users_changed)
        self._fixed_params = self._challenge_params()

    def _derive(self, user: User) -> None:
        for family, algorithm in self._families.items():
            ha1 = self._initial_ha1(user, algorithm)
            if ha1 is not None:
                self._ha1[(family, user.name)] = ha1
            if self.options.userhash:
                self._by_userhash[family][compute_userhash(algorithm, user.name, self.realm)] = user.name

    def users_changed(self, names: frozenset[str]) -> None:
        """A rotation changed these users: derive their HA1 again; nonces and replay counters stay."""
        for family, by_hash in self._by_userhash.items():
            self._by_userhash[family] = {h: n for h, n in by_hash.items() if n not in names}
        self._ha1 = {key: ha1 for key, ha1 in self._ha1.items() if key[1] not in names}
        for name in names:
            user = self.context.users.get(name)
            if user is not None:
                self._derive(user)

    def _initial_ha1(self, user: User, algorithm: Algorithm) -> str | None:
        if user.secret.cleartext is not None:
            return compute_ha1(algorithm, user.name, self.realm, user.secret.cleartext)
        if algorithm.family == "MD5":
            return user.secret.htdigest_ha1
        return None

    def _challenge_params(self) -> list[str]:
        """The parameters every challenge shares, in a fixed order (nonce aside)."""
        params = [format_param("realm", self.realm)]
        if self.options.qop:
            params.append(format_param("qop", ", ".join(self.options.qop)))
        return params

    def challenges(self, facts: RequestFacts, stale: bool = False) -> list[str]:
        """One challenge per algorithm, in the configured order (RFC 7616 §3.7), one shared nonce."""
        nonce = self.nonces.issue()
        tail = []
        if self.options.opaque is not None:
            tail.append(format_param("opaque", self.options.opaque))
        if self.options.domain:
            tail.append(format_param("domain", " ".join(self.options.domain)))
        if self.options.charset:
            tail.append(format_param("charset", "UTF-8", quoted=False))
        if self.options.userhash:
            tail.append(format_param("userhash", "true", quoted=False))
        if stale:
            tail.append(format_param("stale", "true", quoted=False))
        return [
            format_challenge(
                "Digest",
                [
                    *self._fixed_params,
                    format_param("algorithm", algorithm.name, quoted=False),
                    format_param("nonce", nonce),
                    *tail,
                ],
            )
            for algorithm in self.algorithms
        ]

    def wants_body(self, credentials: str) -> bool:
        """True when these credentials use ``qop=auth-int``: the decision needs the body.

        Cheap and forgiving: a malformed value answers False, and ``verify``
        then reports it.
        """
        if "auth-int" not in credentials or len(credentials) > MAX_CREDENTIALS:
            return False
        try:
            return parse_auth_params(credentials).get("qop", "").lower() == "auth-int"
        except AuthParamError:
            return False

    def verify(self, credentials: str, facts: RequestFacts) -> AuthResult:
        if len(credentials) > MAX_CREDENTIALS:
            return self._fail(Result.MALFORMED, f"Digest credentials too long ({len(credentials)} characters)")
        try:
            params = parse_auth_params(credentials)
            user = self._user_name(params)
        except AuthParamError as e:
            return self._fail(Result.MALFORMED, f"malformed Digest credentials: {e}")
        missing = [k for k in ("realm", "nonce", "uri", "response") if k not in params]
        if missing:
            return self._fail(Result.MALFORMED, "Digest credentials lack " + ", ".join(f"'{k}'" for k in missing))
        return self._check(params, user, facts)

    def _user_name(self, params: dict[str, str]) -> str:
        """``username`` or RFC 8187 ``username*``, exactly one of them."""
        if "username" in params and "username*" in params:
            raise AuthParamError("both 'username' and 'username*' are present")
        if "username*" in params:
            return decode_ext_value(params["username*"])
        if "username" not in params:
            raise AuthParamError("no 'username'")
        return params["username"]

    def _fail(self, result: Result, reason: str, user: str | None = None) -> AuthResult:
        return AuthResult(result, reason, "digest", user)

    def _negotiated(self, params: dict[str, str]) -> tuple[Algorithm, str | None] | AuthResult:
        """The algorithm and qop the client chose, if we offered them (else the refusal)."""
        name = params.get("algorithm", "MD5")  # RFC 7616 §3.4: absent means MD5
        algorithm = _BY_LOWER.get(name.lower())
        if algorithm is None or algorithm not in self.algorithms:
            offered = ", ".join(a.name for a in self.algorithms)
            return self._fail(Result.MALFORMED, f"algorithm '{printable(name, 20)}' was not offered ({offered})")
        qop = params.get("qop")
        if qop is None:
            if not self.options.rfc2069:
                return self._fail(Result.MALFORMED, "no qop (an RFC 2069 response); this scenario requires qop")
            return algorithm, None
        qop = qop.lower()
        if qop not in self.options.qop:
            return self._fail(Result.MALFORMED, f"qop '{printable(qop, 20)}' was not offered")
        if not NC_PATTERN.fullmatch(params.get("nc", "")) or not params.get("cnonce"):
            return self._fail(Result.MALFORMED, "qop needs 'cnonce' and 'nc' (8 hex digits)")
        return algorithm, qop

    def _context_mismatch(self, params: dict[str, str], facts: RequestFacts) -> AuthResult | None:
        """realm, opaque and uri must be the ones of this proxy and this request."""
        if not hmac.compare_digest(params["realm"].encode(), self.realm.encode()):
            return self._fail(Result.BAD_CREDENTIALS, f"realm '{printable(params['realm'])}' is not this proxy's realm")
        if self.options.opaque is not None and not hmac.compare_digest(
            params.get("opaque", "").encode(), self.options.opaque.encode()
        ):
            return self._fail(Result.BAD_CREDENTIALS, "opaque was not returned unchanged")
        if not request_target_matches(params["uri"], facts):
            return self._fail(
                Result.BAD_CREDENTIALS,
                f"uri '{printable(params['uri'])}' does not match the request target '{printable(facts.target)}'",
            )
        return None

    def _check(self, params: dict[str, str], user: str, facts: RequestFacts) -> AuthResult:
        negotiated = self._negotiated(params)
        if isinstance(negotiated, AuthResult):
            return negotiated
        algorithm, qop = negotiated
        nonce, uri, nc = params["nonce"], params["uri"], params.get("nc")
        state, age = self.nonces.check(nonce)
        if state is NonceState.FORGED:
            return self._fail(Result.BAD_CREDENTIALS, "nonce was not issued by this proxy (or before a restart)")
        mismatch = self._context_mismatch(params, facts)
        if mismatch is not None:
            return mismatch
        resolved = self._resolve_user(user, params.get("userhash", "false").lower() == "true", algorithm)
        if resolved is None or resolved not in self.context.users:
            shown = None if resolved is None else printable(resolved)
            what = "unknown user (userhash matches no user)" if resolved is None else f"unknown user '{shown}'"
            return self._fail(Result.UNKNOWN_USER, what, shown)
        shown = printable(resolved)
        ha1 = self._ha1.get((algorithm.family, resolved))
        if ha1 is None:
            return self._fail(
                Result.BAD_CREDENTIALS,
                f"user '{shown}' has only an MD5 HA1 (htdigest) and cannot answer {algorithm.name}",
                shown,
            )
        if qop == "auth-int" and facts.body is None and not facts.is_connect:
            return self._fail(Result.MALFORMED, "qop auth-int, but the request body was not available", shown)
        cnonce = params.get("cnonce")
        expected = compute_response(algorithm, ha1, nonce, nc, cnonce, qop, facts.method, uri, facts.body)
        if not hmac.compare_digest(params["response"].lower().encode(), expected.encode()):
            return self._fail(
                Result.BAD_CREDENTIALS,
                f"wrong response for user '{shown}' (wrong password, or the client hashed other values; "
                f"algorithm {algorithm.name}, qop {qop or 'none'}, uri '{printable(uri)}')",
                shown,
            )
        if state is NonceState.EXPIRED:
            return self._fail(
                Result.STALE,
                f"nonce expired {age - self.nonces.ttl:.0f} s ago (nonce_ttl {self.nonces.ttl:g} s); "
                "the 407 says stale=true",
                shown,
            )
        if qop is not None and not self.replays.accept(nonce, int(nc or "0", 16)):
            return self._fail(Result.BAD_CREDENTIALS, f"nc {nc} was already used with this nonce (replay)", shown)
        return AuthResult(
            Result.OK,
            f"valid Digest {algorithm.name} response for '{shown}'",
            "digest",
            resolved,
            headers=(("Proxy-Authentication-Info", self._authentication_info(algorithm, ha1, params, qop)),),
        )

    def _resolve_user(self, name: str, userhash: bool, algorithm: Algorithm) -> str | None:
        if not userhash:
            return name
        return self._by_userhash.get(algorithm.family, {}).get(name.lower())

    def _authentication_info(self, algorithm: Algorithm, ha1: str, params: dict[str, str], qop: str | None) -> str:
        """RFC 7616 §3.5: nextnonce, and with qop the rspauth proving we know HA1.

        ``rspauth`` is the response with an empty method. For auth-int it
        would hash the origin's response body, which is not known here, so it
        is left out (RFC 7615 makes every field optional).
        """
        info = [format_param("nextnonce", self.nonces.issue())]
        if qop is not None:
            info.append(format_param("qop", qop, quoted=False))
            if qop == "auth":
                rspauth = compute_response(
                    algorithm, ha1, params["nonce"], params["nc"], params["cnonce"], qop, "", params["uri"]
                )
                info.append(format_param("rspauth", rspauth))
            info.append(format_param("cnonce", params["cnonce"]))
            info.append(format_param("nc", params["nc"], quoted=False))
        return ", ".join(info)

    def connection_closed(self, connection_id: str) -> None:
        pass


SPEC = SchemeSpec(
    name="digest",
    token="Digest",
    parse_options=parse_options,
    build=DigestScheme,
    needs_cleartext=True,
    secret_kinds=frozenset({"htdigest"}),
)
