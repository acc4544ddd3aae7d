"""NTLM proxy authentication (MS-NLMP over HTTP), bound to the client connection.

Three legs on one kept-alive connection: the client's Type 1 gets a 407 whose
only ``Proxy-Authenticate`` is ``NTLM <Type 2>`` (a CONTINUE result), its
Type 3 is verified against the scenario's cleartext users, and success
authenticates the whole client connection (``via_connection``): later
requests on it, and a CONNECT tunnel, pass without headers. A new connection
starts over. The protocol work is in ``ntlm_acceptor``.
"""

from __future__ import annotations

import base64

from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.schemes.base import SchemeContext, SchemeSpec
from mitm407.schemes.ntlm_acceptor import (
    NtlmAcceptor,
    NtlmOptions,
    TokenError,
    decode_token,
    parse_ntlm_options,
    with_header,
)


class NtlmScheme:
    name = "ntlm"
    token = "NTLM"
    connection_bound = True

    def __init__(self, context: SchemeContext) -> None:
        options: NtlmOptions = context.options or NtlmOptions()
        self.acceptor = NtlmAcceptor(self.name, options, context.users, context.clock)

    def challenges(self, facts: RequestFacts, stale: bool = False) -> list[str]:
        return [self.token]

    def verify(self, credentials: str, facts: RequestFacts) -> AuthResult:
        try:
            raw = decode_token(credentials, "NTLM")
        except TokenError as e:
            self.acceptor.connection_closed(facts.connection_id)
            return AuthResult(Result.MALFORMED, str(e), self.name)
        step = self.acceptor.step(raw, facts.connection_id)
        if step.token is None:
            return step.auth
        return with_header(step, "NTLM " + base64.b64encode(step.token).decode("ascii"))

    def connection_closed(self, connection_id: str) -> None:
        self.acceptor.connection_closed(connection_id)


SPEC = SchemeSpec(name="ntlm", token="NTLM", parse_options=parse_ntlm_options, build=NtlmScheme, needs_cleartext=True)
