"""The server side of NTLM (MS-NLMP), verified against a scenario's cleartext users.

Why not ``spnego.server(protocol="ntlm")``: that acceptor reads users from the
file named by the process-wide ``NTLM_USER_FILE`` variable (re-read on every
Type 3; ``DOMAIN:user:password`` lines split on every ``:``, so passwords with
colons cannot be expressed), takes NTLMv1 acceptance from the process-wide
``LM_COMPAT_LEVEL`` and announces the machine's host name. Two scenarios (or a
reload) in one process would race on those variables. So the messages and the
crypto come from pyspnego's primitives (``spnego._ntlm_raw`` through ``spnego_compat``: message
packing, MD4, HMAC-MD5, NTLMv1 responses), and the protocol decisions are
here, per scenario, with no file and no environment.

Sans-IO: ``step(token, connection_id)`` takes one decoded NTLM message and
returns the ``AuthResult`` plus the token to send back (the Type 2).
"""

from __future__ import annotations

import binascii
import hmac
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from mitm407.core.credentials import User
from mitm407.core.results import AuthResult, Result
from mitm407.core.users import watch_users
from mitm407.core.yamlnodes import Mapping as YamlMapping
from mitm407.core.yamlnodes import Reader
from mitm407.schemes.handshakes import HandshakeTable
from mitm407.schemes.spnego_compat import (
    Authenticate,
    AvFlags,
    AvId,
    Challenge,
    FileTime,
    Negotiate,
    NegotiateFlags,
    NTClientChallengeV2,
    TargetInfo,
    Version,
    compute_response_v1,
    hmac_md5,
    lmowfv1,
    ntowfv1,
    ntowfv2,
    rc4k,
)
from mitm407.wire.authparams import MAX_CREDENTIALS
from mitm407.wire.terminal import printable

SIGNATURE = b"NTLMSSP\x00"
DOMAIN_CHECKS = ("any", "optional", "exact")


class TokenError(ValueError):
    """A credentials token that is not what the scheme expects; the message is safe to log."""


def decode_token(text: str, scheme: str) -> bytes:
    """Strict base64 of an NTLM/Negotiate header token."""
    text = text.strip()
    if not text:
        raise TokenError(f"empty {scheme} token")
    if len(text) > MAX_CREDENTIALS:
        raise TokenError(f"{scheme} token too long ({len(text)} characters)")
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise TokenError(f"{scheme} token is not valid base64") from None


@dataclass(frozen=True)
class NtlmOptions:
    """The ``ntlm:`` (and ``negotiate:``) scenario section."""

    domain: str = "MITM407"  # NetBIOS domain announced in the Type 2 message
    server: str = "PROXY"  # NetBIOS computer name announced in the Type 2 message
    domain_check: str = "any"  # any | optional | exact: how the client's domain must match the user's
    upn: bool = True  # "user@domain" in the user field names user and domain
    ntlmv1: bool = False  # accept NTLMv1 / NTLM2-session responses (legacy clients)
    handshake_timeout: float = 60.0  # seconds from Type 2 to Type 3
    max_handshakes: int = 10_000  # unfinished handshakes kept (oldest dropped)


def parse_ntlm_options(reader: Reader, section: YamlMapping | None) -> NtlmOptions:
    if section is None:
        return NtlmOptions()
    d = NtlmOptions()
    options = NtlmOptions(
        domain=section.text("domain", d.domain) or d.domain,
        server=section.text("server", d.server) or d.server,
        domain_check=section.choice("domain_check", DOMAIN_CHECKS, d.domain_check),
        upn=section.boolean("upn", d.upn),
        ntlmv1=section.boolean("ntlmv1", d.ntlmv1),
        handshake_timeout=section.number("handshake_timeout", d.handshake_timeout, minimum=1) or d.handshake_timeout,
        max_handshakes=section.integer("max_handshakes", d.max_handshakes, minimum=1) or d.max_handshakes,
    )
    section.finish()
    return options


@dataclass(frozen=True, slots=True)
class Pending:
    """What the Type 3 is checked against: the exact bytes exchanged so far (the MIC covers them)."""

    negotiate: bytes
    challenge: bytes
    server_challenge: bytes


@dataclass(frozen=True, slots=True)
class Step:
    auth: AuthResult
    token: bytes | None = None  # the Type 2 to send back on CONTINUE


def message_type(token: bytes) -> int:
    if len(token) < 12 or not token.startswith(SIGNATURE):
        raise TokenError("not an NTLM message (no NTLMSSP signature)")
    return struct.unpack("<I", token[8:12])[0]


@dataclass
class NtlmAcceptor:
    """One per scheme instance (per scenario load); handshakes keyed by client connection."""

    scheme: str  # "ntlm" or "negotiate": what results are labelled with
    options: NtlmOptions
    users: Mapping[str, User]
    clock: Callable[[], float]
    random: Callable[[int], bytes] = os.urandom  # overridable so tests can pin the server challenge
    pending: HandshakeTable[Pending] = field(init=False)

    def __post_init__(self) -> None:
        self.pending = HandshakeTable(self.options.max_handshakes, self.options.handshake_timeout, self.clock)
        self._by_lower = {name.lower(): user for name, user in self.users.items()}
        self._nt_hashes: dict[str, bytes] = {}
        watch_users(self.users, self.users_changed)
        self._steps: dict[int, Callable[[bytes, str], Step]] = {1: self.negotiate, 3: self.authenticate}

    def users_changed(self, names: frozenset[str]) -> None:
        """A rotation changed these users' passwords: forget their hashes; handshakes in flight stay."""
        self._by_lower = {name.lower(): user for name, user in self.users.items()}
        for name in names:
            self._nt_hashes.pop(name, None)

    # -- dispatch --------------------------------------------------------------
    def step(self, token: bytes, connection_id: str) -> Step:
        """Handle one client message; a broken or unexpected one is MALFORMED, never an exception."""
        try:
            kind = message_type(token)
            handler = self._steps.get(kind)
            if handler is None:
                raise TokenError(f"NTLM message type {kind} is not one a client sends")
            return handler(token, connection_id)
        except TokenError as e:
            self.pending.drop(connection_id)
            return Step(self._result(Result.MALFORMED, str(e)))

    def connection_closed(self, connection_id: str) -> None:
        self.pending.drop(connection_id)

    def _result(self, result: Result, reason: str, user: str | None = None) -> AuthResult:
        return AuthResult(result, reason, self.scheme, user, via_connection=result is Result.OK)

    # -- Type 1 -> Type 2 ---------------------------------------------------------
    def negotiate(self, token: bytes, connection_id: str) -> Step:
        try:
            negotiate = Negotiate.unpack(token)
            client_flags = negotiate.flags
        except Exception:  # third-party parser of hostile bytes: any failure means malformed
            raise TokenError("NTLM type 1 message cannot be parsed") from None
        challenge = self.build_challenge(client_flags)
        self.pending.put(connection_id, Pending(token, challenge.pack(), challenge.server_challenge))
        return Step(
            self._result(Result.CONTINUE, "NTLM type 2 challenge sent; the type 3 must follow on this connection"),
            challenge.pack(),
        )

    def build_challenge(self, client_flags: int) -> Challenge:
        flags = (
            client_flags
            | NegotiateFlags.request_target
            | NegotiateFlags.ntlm
            | NegotiateFlags.always_sign
            | NegotiateFlags.target_info
            | NegotiateFlags.target_type_domain
        ) & ~NegotiateFlags.target_type_server
        if flags & NegotiateFlags.unicode:
            flags &= ~NegotiateFlags.oem
        elif not flags & NegotiateFlags.oem:
            raise TokenError("NTLM type 1 message sets neither the UNICODE nor the OEM flag")
        if not self.options.ntlmv1:
            # Ask for the modern path: curl, for one, answers NTLMv2 only when this flag is set.
            flags |= NegotiateFlags.extended_session_security
        if flags & NegotiateFlags.extended_session_security:
            flags &= ~NegotiateFlags.lm_key
        info = TargetInfo()
        info[AvId.nb_computer_name] = self.options.server
        info[AvId.nb_domain_name] = self.options.domain
        info[AvId.dns_computer_name] = self.options.server.lower()
        info[AvId.dns_domain_name] = self.options.domain.lower()
        info[AvId.timestamp] = FileTime.now()
        extra = {"version": Version.get_current()} if flags & NegotiateFlags.version else {}
        return Challenge(flags, self.random(8), target_name=self.options.domain, target_info=info, **extra)

    # -- Type 3 -----------------------------------------------------------------
    def authenticate(self, token: bytes, connection_id: str) -> Step:
        pending = self.pending.take(connection_id)
        if pending is None:
            raise TokenError(
                "NTLM type 3 message without a pending type 1 on this connection "
                "(never sent, timed out, or sent on another connection)"
            )
        try:
            auth = Authenticate.unpack(token)
            user_raw, domain_raw = auth.user_name or "", auth.domain_name or ""
            nt_response, lm_response = auth.nt_challenge_response or b"", auth.lm_challenge_response or b""
        except Exception:  # third-party parser of hostile bytes
            raise TokenError("NTLM type 3 message cannot be parsed") from None
        shown = printable(f"{domain_raw}\\{user_raw}" if domain_raw else user_raw)
        if not user_raw:
            raise TokenError("anonymous NTLM (no user name) is not accepted")
        user, refusal = self.find_user(user_raw, domain_raw)
        if user is None:
            return Step(self._result(Result.UNKNOWN_USER, f"{refusal} (NTLM user '{shown}')", printable(user_raw)))
        password = user.secret.cleartext or ""
        nt_hash = self._nt_hashes.get(user.name)
        if nt_hash is None:
            nt_hash = self._nt_hashes[user.name] = ntowfv1(password)
        if len(nt_response) > 24:
            version = "NTLMv2"
            ok, session_base = self._check_v2(nt_hash, user_raw, domain_raw, nt_response, pending)
        elif not self.options.ntlmv1:
            raise TokenError(
                f"NTLMv1/LM response refused for '{shown}' (NTLMv2 only; the scenario can allow it with ntlm.ntlmv1)"
            )
        elif len(nt_response) != 24:
            raise TokenError(f"LM-only NTLM response refused for '{shown}'")
        else:
            version = "NTLMv1"
            ok, session_base = self._check_v1(auth.flags, nt_hash, password, nt_response, lm_response, pending)
        if not ok:
            return Step(self._result(Result.BAD_CREDENTIALS, f"wrong password for NTLM user '{shown}'", user.name))
        if not self._mic_ok(auth, nt_response, session_base, pending):
            raise TokenError(f"NTLM type 3 MIC does not match for '{shown}' (message altered)")
        return Step(
            self._result(Result.OK, f"{version} handshake completed for '{shown}'; connection authenticated", user.name)
        )

    def find_user(self, user_raw: str, domain_raw: str) -> tuple[User | None, str]:
        """The scenario user a Type 3 names, under the scenario's domain rules; or (None, why)."""
        name, domain = user_raw, domain_raw
        if self.options.upn and not domain and "@" in user_raw:
            name, _, domain = user_raw.rpartition("@")
        user = self.users.get(name) or self._by_lower.get(name.lower())
        if user is None:
            return None, "unknown user"
        check = self.options.domain_check
        same = domain.lower() == user.domain.lower()
        if check == "exact" and not same:
            return None, f"domain '{printable(domain, 40)}' does not match the user's domain (domain_check: exact)"
        if check == "optional" and domain and not same:
            return None, f"domain '{printable(domain, 40)}' does not match the user's domain (domain_check: optional)"
        return user, ""

    @staticmethod
    def _check_v2(
        nt_hash: bytes, user_raw: str, domain_raw: str, nt_response: bytes, pending: Pending
    ) -> tuple[bool, bytes]:
        """MS-NLMP 3.3.2: NTProofStr = HMAC_MD5(NTOWFv2, ServerChallenge + temp), on the bytes as sent."""
        key = ntowfv2(user_raw, nt_hash, domain_raw)
        proof = hmac_md5(key, pending.server_challenge + nt_response[16:])
        return hmac.compare_digest(proof, nt_response[:16]), hmac_md5(key, proof)

    @staticmethod
    def _check_v1(
        flags: int, nt_hash: bytes, password: str, nt_response: bytes, lm_response: bytes, pending: Pending
    ) -> tuple[bool, bytes]:
        client_challenge = b"\x00" * 8
        if flags & NegotiateFlags.extended_session_security:
            client_challenge = (lm_response or b"\x00" * 8)[:8]
        expected_nt, _, key = compute_response_v1(
            flags, nt_hash, lmowfv1(password), pending.server_challenge, client_challenge, no_lm_response=False
        )
        return hmac.compare_digest(expected_nt, nt_response), key

    @staticmethod
    def _mic_ok(auth: Authenticate, nt_response: bytes, session_base: bytes, pending: Pending) -> bool:
        """When the client declares a MIC (AV flag 0x2), check it over all three messages."""
        if len(nt_response) <= 24:
            return True
        try:
            av_pairs = NTClientChallengeV2.unpack(nt_response[16:]).av_pairs
            declared = int(av_pairs.get(AvId.flags, 0)) & AvFlags.mic
            mic = auth.mic
        except Exception:  # third-party parser of hostile bytes
            return False
        if not declared:
            return True
        if not mic:
            return False
        session_key = session_base
        if auth.flags & NegotiateFlags.key_exch and auth.flags & (NegotiateFlags.sign | NegotiateFlags.seal):
            session_key = rc4k(session_base, auth.encrypted_random_session_key or b"")
        zeroed = Authenticate.unpack(auth.pack())
        zeroed.mic = b"\x00" * 16
        expected = hmac_md5(session_key, pending.negotiate + pending.challenge + zeroed.pack())
        return hmac.compare_digest(expected, mic)


def with_header(step: Step, value: str) -> AuthResult:
    """The CONTINUE result carrying the next challenge as the only ``Proxy-Authenticate``."""
    return replace(step.auth, headers=(("Proxy-Authenticate", value),))
