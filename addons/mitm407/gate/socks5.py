"""SOCKS5 username/password (RFC 1929): the same users, cache and faults as Basic, no HTTP.

A SOCKS5 client sends its username and password once per connection, before
it names a destination: there is no request to apply rules to yet. So the
handshake only *authenticates* (the connection, like NTLM); the rules decide
per destination later, when the addon asks ``Gate.decide`` with the
connection's ``ConnectionState`` (a deny rule refuses the SOCKS CONNECT, a
``required`` rule rides on the connection's authentication).

The password is checked by a ``BasicScheme`` reading the gate's
``UserDirectory``: one password check for every transport (plain, ``env:``,
``file:``, htpasswd hashes, bcrypt with its cache and worker threads), and a
fault ``rotate`` that swaps the directory's users reaches it too. The faults
of the scenario's top level (expiry, lockout, always refuse, ...) then act on
the verdict exactly as on an HTTP request, after the control API's
overrides (locked, expired users); a rule's own faults need a destination and
act on the requests inside.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import NamedTuple

from mitm407.core.facts import RequestFacts
from mitm407.core.results import AuthResult, Result
from mitm407.core.verdict import Action, Verdict
from mitm407.faults.engine import Fired
from mitm407.gate.authorizer import SlowCheck
from mitm407.gate.gate import Gate
from mitm407.wire.terminal import printable

SCHEME = "socks5"
METHOD = "SOCKS5"  # the ``method`` of the facts faults see for a handshake (no HTTP method exists)


class Socks5Decision(NamedTuple):
    """Whether the handshake passes. ``valid`` is False unless everything said yes."""

    valid: bool
    auth: AuthResult | None  # None only with ``slow_check`` (nothing decided yet)
    fired: tuple[Fired, ...] = ()
    delay: float = 0.0  # fault 'delay': seconds before answering the handshake
    slow_check: SlowCheck | None = None  # run off the event loop, then decide again


def handshake_facts(client_ip: str, connection_id: str) -> RequestFacts:
    """What faults (lockout by client address, ...) see of a handshake: no destination yet."""
    return RequestFacts(
        method=METHOD, target="", host="", port=0, path="", client_ip=client_ip, connection_id=connection_id
    )


def as_socks5(auth: AuthResult) -> AuthResult:
    """The Basic check's result, told as a SOCKS5 one (the hop log's ``auth.scheme: "socks5"``)."""
    return replace(auth, scheme=SCHEME, reason=auth.reason.replace("Basic credentials", "SOCKS5 credentials"))


def refused(reason: str, user: str | None = None) -> Socks5Decision:
    return Socks5Decision(False, AuthResult(Result.MALFORMED, reason, SCHEME, user))


class Socks5Gate:
    """The SOCKS5 handshake check of one scenario load (built beside its ``Gate``)."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.basic = gate.password_checker  # the gate's password check, shared with the login portal

    def decide(
        self, username: str, password: str, client_ip: str, connection_id: str, defer_slow: bool = True
    ) -> Socks5Decision:
        """Check one RFC 1929 username/password; faults of the scenario's top level apply."""
        shown = printable(username)
        if ":" in username:  # a Basic token cannot carry it: refused, never parsed as another user
            return refused(f"SOCKS5 username '{shown}' contains ':'", shown)
        token = base64.b64encode(f"{username}:{password}".encode("utf-8", "surrogateescape")).decode("ascii")
        self.gate.rotate_users()  # fault 'rotate', before authentication
        if defer_slow and self.basic.slow_check_pending(token):
            return Socks5Decision(False, None, slow_check=SlowCheck(self.basic, token))
        facts = handshake_facts(client_ip, connection_id)
        auth = as_socks5(self.basic.verify(token, facts))
        verdict = Verdict(Action.FORWARD if auth.result is Result.OK else Action.CHALLENGE, auth, None)
        verdict = self.gate.overrides.apply(verdict)  # the control API's locked and expired users
        decision = self.gate.faults.decide(facts, verdict)
        final = as_socks5(decision.verdict.auth)
        if decision.kill:  # fault 'drop': a SOCKS server that hangs up is a refusal too
            final = AuthResult(Result.DENIED, "connection dropped by a fault", SCHEME, final.user)
        valid = not decision.kill and decision.verdict.action is Action.FORWARD and final.result is Result.OK
        return Socks5Decision(valid, final, decision.fired, decision.delay)
