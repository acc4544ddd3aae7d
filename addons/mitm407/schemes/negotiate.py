"""Negotiate (SPNEGO, RFC 4559/4178) proxy authentication: Kerberos and/or NTLM inside.

Offered as ``Proxy-Authenticate: Negotiate``. Which mechanisms it accepts is
the scenario's ``negotiate.mechanisms`` (default: ``[kerberos]`` when
``negotiate.kerberos`` names a keytab, else ``[ntlm]``), in order of
preference. Accepted tokens: a SPNEGO NegTokenInit (its optimistic token is
used when the client's first mechanism is the one chosen; otherwise the
chosen one is named in a NegTokenResp and the client sends its token next),
NegTokenResp tokens carrying a mechanism's message, and the bare mechanism
tokens some clients send under the ``Negotiate`` name (raw NTLM from .NET,
a raw GSS-API Kerberos AP-REQ).

Both mechanisms are connection-bound, as IIS and Squid treat them: success
authenticates the client connection (``via_connection``). Kerberos takes one
round (the AP-REQ); when the client asked for mutual authentication the AP-REP
goes back on the accepted response as ``Proxy-Authenticate: Negotiate
<token>`` (RFC 4559 §5, proxy form), through ``AuthResult.headers``.
Without a keytab, a Kerberos-only token is refused (MALFORMED), so a client
that can fall back to NTLM does.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass

from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.yamlnodes import Mapping as YamlMapping
from mitm407.core.yamlnodes import Reader
from mitm407.schemes.base import SchemeContext, SchemeSpec
from mitm407.schemes.kerberos import (
    KERBEROS_OID,
    KERBEROS_OIDS,
    KerberosAcceptor,
    KerberosOptions,
    parse_kerberos_options,
)
from mitm407.schemes.ntlm import NtlmScheme
from mitm407.schemes.ntlm_acceptor import (
    SIGNATURE,
    NtlmOptions,
    Step,
    TokenError,
    decode_token,
    parse_ntlm_options,
    with_header,
)
from mitm407.schemes.spnego_compat import InitialContextToken, NegState, NegTokenInit, NegTokenResp, unpack_token

NTLM_OID = "1.3.6.1.4.1.311.2.2.10"
MECH_NAMES = {
    NTLM_OID: "NTLM",
    KERBEROS_OID: "Kerberos",
    "1.2.840.48018.1.2.2": "Kerberos (MS)",
    "1.3.6.1.5.2.5": "IAKerb",
    "1.3.6.1.4.1.311.2.2.30": "NEGOEX",
}
MECHANISMS = ("kerberos", "ntlm")
NOT_SPNEGO = "Negotiate token is neither SPNEGO nor NTLM (Kerberos is not supported)"
NOT_SPNEGO_KERBEROS = "Negotiate token is neither SPNEGO, Kerberos nor NTLM"


@dataclass(frozen=True)
class NegotiateOptions(NtlmOptions):
    """The ``negotiate:`` section: NTLM's keys plus ``kerberos`` and ``mechanisms``.

    A section without those two keys reads as plain ``NtlmOptions`` (so it
    may alias the ``ntlm:`` section, as shipped scenarios do).
    """

    kerberos: KerberosOptions | None = None
    mechanisms: tuple[str, ...] = ("ntlm",)


def parse_negotiate_options(reader: Reader, section: YamlMapping | None) -> NtlmOptions:
    if section is None:
        return NtlmOptions()
    kerberos_node = section.get("kerberos")
    mechanisms_node = section.get("mechanisms")
    kerberos = None
    kerberos_section = section.mapping("kerberos")
    if kerberos_section is not None:
        kerberos = parse_kerberos_options(reader, kerberos_section, kerberos_node)
    default = ("kerberos",) if kerberos_section is not None else ("ntlm",)
    mechanisms = section.choice_list("mechanisms", MECHANISMS, default)
    if mechanisms_node is not None and not mechanisms:
        reader.error(mechanisms_node, "'mechanisms' must list at least one mechanism", ", ".join(MECHANISMS))
    if "kerberos" in mechanisms and kerberos_section is None:
        reader.error(
            mechanisms_node or section.node,
            "mechanism 'kerberos' needs a 'kerberos:' section with a keytab",
            "kerberos: {keytab: proxy.keytab}",
        )
    ntlm = parse_ntlm_options(reader, section)  # reads NTLM's keys and reports unknown ones
    if kerberos_node is None and mechanisms_node is None:
        return ntlm
    return NegotiateOptions(**asdict(ntlm), kerberos=kerberos, mechanisms=mechanisms)


@dataclass(frozen=True, slots=True)
class Inner:
    """What a Negotiate token carries, once the SPNEGO framing is off."""

    mech: str  # "ntlm" or "kerberos"
    token: bytes | None  # None: the client's optimistic token was for another mechanism: select this one
    spnego: bool  # it came in SPNEGO: answers go back in SPNEGO
    first: bool  # the client's NegTokenInit: the answer names the chosen mechanism
    oid: str = ""  # the chosen mechanism's OID as the client listed it


def mech_of(oid: str) -> str | None:
    if oid == NTLM_OID:
        return "ntlm"
    return "kerberos" if oid in KERBEROS_OIDS else None


def unwrap_negotiate(raw: bytes, mechanisms: tuple[str, ...] = ("ntlm",)) -> Inner:
    """The mechanism and its token, chosen by the scenario's ``mechanisms`` (in order of preference)."""
    kerberos = "kerberos" in mechanisms
    if raw.startswith(SIGNATURE):
        return _allowed(Inner("ntlm", raw, False, False), mechanisms)
    try:
        token = unpack_token(raw)
    except Exception:  # third-party ASN.1 parser of hostile bytes
        raise TokenError(NOT_SPNEGO_KERBEROS if kerberos else NOT_SPNEGO) from None
    if isinstance(token, NegTokenInit):
        offered = list(token.mech_types or [])
        for mech in mechanisms:
            oid = next((o for o in offered if mech_of(o) == mech), None)
            if oid is not None:
                optimistic = token.mech_token if offered[0] == oid else None
                return Inner(mech, optimistic, True, True, oid)
        names = ", ".join(MECH_NAMES.get(m, m) for m in offered) or "nothing"
        if kerberos:
            raise TokenError(f"Negotiate token offers {names}, none of {', '.join(mechanisms)}")
        raise TokenError(f"Negotiate token offers {names}, not NTLM (Kerberos is not supported)")
    if isinstance(token, NegTokenResp):
        if token.response_token is None:
            raise TokenError("SPNEGO NegTokenResp without a response token")
        ntlm = token.response_token.startswith(SIGNATURE) or not kerberos  # NTLM's acceptor names the problem
        return _allowed(Inner("ntlm" if ntlm else "kerberos", token.response_token, True, False), mechanisms)
    if kerberos and is_kerberos_token(raw):
        return Inner("kerberos", raw, False, False)
    raise TokenError(NOT_SPNEGO_KERBEROS if kerberos else NOT_SPNEGO)  # e.g. a bare Kerberos AP-REQ


def is_kerberos_token(raw: bytes) -> bool:
    """A GSS-API initial context token whose mechanism is Kerberos (RFC 2743 §3.1)."""
    try:
        token = unpack_token(raw, unwrap=True)
    except Exception:  # third-party ASN.1 parser of hostile bytes
        return False
    return isinstance(token, InitialContextToken) and token.this_mech in KERBEROS_OIDS


def _allowed(inner: Inner, mechanisms: tuple[str, ...]) -> Inner:
    if inner.mech not in mechanisms:
        label = "NTLM" if inner.mech == "ntlm" else "Kerberos"
        raise TokenError(f"{label} is not among this proxy's Negotiate mechanisms ({', '.join(mechanisms)})")
    return inner


class NegotiateScheme(NtlmScheme):
    """SPNEGO framing over the NTLM acceptor (the NTLM scheme's) and, with a keytab, Kerberos."""

    name = "negotiate"
    token = "Negotiate"

    def __init__(self, context: SchemeContext) -> None:
        super().__init__(context)
        options = context.options
        self.mechanisms: tuple[str, ...] = getattr(options, "mechanisms", ("ntlm",))
        kerberos: KerberosOptions | None = getattr(options, "kerberos", None)
        self.kerberos = KerberosAcceptor(self.name, kerberos, context.clock) if kerberos is not None else None

    def verify(self, credentials: str, facts: RequestFacts) -> AuthResult:
        try:
            inner = unwrap_negotiate(decode_token(credentials, "Negotiate"), self.mechanisms)
        except TokenError as e:
            self.acceptor.connection_closed(facts.connection_id)
            return AuthResult(Result.MALFORMED, str(e), self.name)
        if inner.token is None:
            # The optimistic token was for another mechanism: select ours, ask for its first token.
            reply = NegTokenResp(NegState.accept_incomplete, inner.oid).pack()
            waiting = "NTLM selected; waiting for its type 1" if inner.mech == "ntlm" else "Kerberos selected"
            step = Step(AuthResult(Result.CONTINUE, f"SPNEGO: {waiting}", self.name), reply)
            return with_header(step, negotiate_header(reply))
        if inner.mech == "kerberos":
            return self.verify_kerberos(inner)
        step = self.acceptor.step(inner.token, facts.connection_id)
        if step.token is None:
            return step.auth
        if inner.spnego:
            supported = NTLM_OID if inner.first else None
            step = Step(step.auth, NegTokenResp(NegState.accept_incomplete, supported, step.token).pack())
        return with_header(step, negotiate_header(step.token or b""))

    def verify_kerberos(self, inner: Inner) -> AuthResult:
        if self.kerberos is None:  # unreachable: "kerberos" in mechanisms needs a keytab
            return AuthResult(Result.MALFORMED, "Kerberos is not configured", self.name)
        assert inner.token is not None
        accepted = self.kerberos.accept(inner.token)
        if accepted.auth.result is not Result.OK:
            return accepted.auth
        reply = accepted.token
        if reply is None:  # the client did not ask for mutual authentication: nothing to send back
            return accepted.auth
        if inner.spnego:
            reply = NegTokenResp(NegState.accept_complete, inner.oid or None, reply).pack()
        return with_header(Step(accepted.auth), negotiate_header(reply))


def negotiate_header(token: bytes) -> str:
    return "Negotiate " + base64.b64encode(token).decode("ascii")


SPEC = SchemeSpec(
    name="negotiate",
    token="Negotiate",
    parse_options=parse_negotiate_options,
    build=NegotiateScheme,
    needs_cleartext=True,
)
