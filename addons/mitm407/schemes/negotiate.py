"""Negotiate (SPNEGO, RFC 4559/4178) proxy authentication, NTLM inside only.

Offered as ``Proxy-Authenticate: Negotiate`` so that "the client prefers
Negotiate and falls back to NTLM" can be reproduced. Accepted tokens: a
SPNEGO NegTokenInit listing NTLM (its optimistic NTLM Type 1 is used when NTLM
is the first mechanism; otherwise NTLM is selected and the client sends its
Type 1 next), NegTokenResp tokens carrying NTLM messages, and raw NTLM
messages under the ``Negotiate`` name (as Windows clients send when SPNEGO is
off). Kerberos needs a KDC and is out of scope: a Kerberos-only token is
refused (MALFORMED), so a client that can fall back to NTLM does.
"""

from __future__ import annotations

import base64

from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.schemes.base import SchemeSpec
from mitm407.schemes.ntlm import NtlmScheme
from mitm407.schemes.ntlm_acceptor import SIGNATURE, Step, TokenError, decode_token, parse_ntlm_options, with_header
from mitm407.schemes.spnego_compat import NegState, NegTokenInit, NegTokenResp, unpack_token

NTLM_OID = "1.3.6.1.4.1.311.2.2.10"
MECH_NAMES = {
    NTLM_OID: "NTLM",
    "1.2.840.113554.1.2.2": "Kerberos",
    "1.2.840.48018.1.2.2": "Kerberos (MS)",
    "1.3.6.1.5.2.5": "IAKerb",
    "1.3.6.1.4.1.311.2.2.30": "NEGOEX",
}
NOT_SPNEGO = "Negotiate token is neither SPNEGO nor NTLM (Kerberos is not supported)"


def unwrap_negotiate(raw: bytes) -> tuple[bytes | None, bool, bool]:
    """(inner NTLM token or None, it came in SPNEGO, this is the client's first SPNEGO token)."""
    if raw.startswith(SIGNATURE):
        return raw, False, False
    try:
        token = unpack_token(raw)
    except Exception:  # third-party ASN.1 parser of hostile bytes
        raise TokenError(NOT_SPNEGO) from None
    if isinstance(token, NegTokenInit):
        mechs = list(token.mech_types or [])
        if NTLM_OID not in mechs:
            offered = ", ".join(MECH_NAMES.get(m, m) for m in mechs) or "nothing"
            raise TokenError(f"Negotiate token offers {offered}, not NTLM (Kerberos is not supported)")
        first = mechs[0] == NTLM_OID
        return (token.mech_token if first else None), True, True
    if isinstance(token, NegTokenResp):
        if token.response_token is None:
            raise TokenError("SPNEGO NegTokenResp without a response token")
        return token.response_token, True, False
    raise TokenError(NOT_SPNEGO)  # e.g. a bare Kerberos AP-REQ


class NegotiateScheme(NtlmScheme):
    """The NTLM scheme's acceptor and state, behind SPNEGO framing."""

    name = "negotiate"
    token = "Negotiate"

    def verify(self, credentials: str, facts: RequestFacts) -> AuthResult:
        try:
            inner, spnego, first = unwrap_negotiate(decode_token(credentials, "Negotiate"))
        except TokenError as e:
            self.acceptor.connection_closed(facts.connection_id)
            return AuthResult(Result.MALFORMED, str(e), self.name)
        if inner is None:
            # The optimistic token was for another mechanism: select NTLM, ask for its first token.
            reply = NegTokenResp(NegState.accept_incomplete, NTLM_OID).pack()
            step = Step(AuthResult(Result.CONTINUE, "SPNEGO: NTLM selected; waiting for its type 1", self.name), reply)
        else:
            step = self.acceptor.step(inner, facts.connection_id)
            if step.token is None:
                return step.auth
            if spnego:
                supported = NTLM_OID if first else None
                step = Step(step.auth, NegTokenResp(NegState.accept_incomplete, supported, step.token).pack())
        return with_header(step, "Negotiate " + base64.b64encode(step.token or b"").decode("ascii"))


SPEC = SchemeSpec(
    name="negotiate", token="Negotiate", parse_options=parse_ntlm_options, build=NegotiateScheme, needs_cleartext=True
)
