"""Kerberos (RFC 4120 AP-REQ through GSS-API, RFC 4121) for the Negotiate scheme.

Why python-gssapi: it is a thin binding of the system's MIT libgssapi_krb5,
the same library curl, git and Python clients use on Linux, so the proxy
accepts exactly what a real Kerberos service accepts (enctypes, clock skew,
ticket times, the keytab format) without reimplementing any of it.
pyspnego's Kerberos support is a layer over the same gssapi package; its
value (SPNEGO framing) is already done here with pyspnego's parser, and the
mechanism choice must follow the scenario, so the lower layer is used
directly. gssapi is an optional extra (``mitm407[kerberos]``): it is imported
only when a scenario has a ``negotiate.kerberos`` section.

The keytab is passed through MIT's credential store (``store={"keytab":
...}``), not the process-wide ``KRB5_KTNAME``: two scenarios in one process
stay apart. Replays: MIT's replay cache let the same AP-REQ through twice
here (krb5 1.20, checked), so accepted AP-REQs are remembered (a digest, never
the token) for ``replay_window`` seconds in a bounded table and refused when
they come back.

Sans-IO like every scheme: ``accept(token)`` takes one mechanism token
(a GSS-API krb5 initial context token) and returns the outcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mitm407.core.results import AuthResult, Result
from mitm407.core.yamlnodes import Mapping as YamlMapping
from mitm407.core.yamlnodes import Reader
from mitm407.schemes.handshakes import HandshakeTable
from mitm407.schemes.keytab import KeytabError, keytab_principals, matches
from mitm407.wire.terminal import printable

KERBEROS_OID = "1.2.840.113554.1.2.2"
KERBEROS_MS_OID = "1.2.840.48018.1.2.2"  # what Windows lists first; the token inside is the same
KERBEROS_OIDS = (KERBEROS_OID, KERBEROS_MS_OID)
EXTRA_HINT = "pip install 'mitm407[kerberos]'; python-gssapi builds against Debian's libkrb5-dev"


@dataclass(frozen=True)
class KerberosOptions:
    """The ``negotiate.kerberos`` scenario section."""

    keytab: str  # absolute path
    principal: str | None = None  # which key accepts; None: any key in the keytab
    replay_window: float = 600.0  # seconds an accepted AP-REQ is remembered (twice MIT's default skew)
    max_replay_entries: int = 100_000


def gssapi_missing() -> bool:
    try:
        import gssapi  # noqa: F401
    except ImportError:
        return True
    return False


def parse_kerberos_options(reader: Reader, section: YamlMapping, key_node: Any) -> KerberosOptions | None:
    """Read and check the section: the extra installed, the keytab readable, the principal in it."""
    d = KerberosOptions(keytab="")
    keytab_text = section.text("keytab", required=True)
    principal = section.text("principal")
    window = section.number("replay_window", d.replay_window, minimum=1) or d.replay_window
    entries = section.integer("max_replay_entries", d.max_replay_entries, minimum=1) or d.max_replay_entries
    section.finish()
    if gssapi_missing():
        reader.error(key_node, "Kerberos needs the optional dependency python-gssapi (not installed)", EXTRA_HINT)
        return None
    if keytab_text is None:
        return None
    keytab_node = section.get("keytab")
    assert keytab_node is not None
    path = (Path(reader.file).resolve().parent / keytab_text).resolve()
    try:
        principals = keytab_principals(path)
    except FileNotFoundError:
        reader.error(keytab_node, f"keytab file not found: {path}", "mitm407 kdc --scenario FILE --dir DIR writes one")
        return None
    except KeytabError as e:
        reader.error(keytab_node, f"cannot read keytab {path}: {e}")
        return None
    except (OSError, ValueError) as e:
        reader.error(keytab_node, f"cannot read keytab {path}: {getattr(e, 'strerror', None) or e}")
        return None
    if not principals:
        reader.error(keytab_node, f"keytab {path} holds no key")
        return None
    if principal is not None and not any(matches(p, principal) for p in principals):
        node = section.get("principal")
        assert node is not None
        shown = ", ".join(principals[:5]) + (" ..." if len(principals) > 5 else "")
        reader.error(node, f"keytab {path} has no key for '{principal}'", f"it has: {shown}")
        return None
    return KerberosOptions(str(path), principal, window, entries)


@dataclass(frozen=True, slots=True)
class Accepted:
    auth: AuthResult
    token: bytes | None = None  # the AP-REP to send back when the client asked for mutual authentication


@dataclass
class KerberosAcceptor:
    """One per scheme instance (per scenario load). Stateless per connection: one AP-REQ, one answer."""

    scheme: str
    options: KerberosOptions
    clock: Callable[[], float]
    replays: HandshakeTable[bool] = field(init=False)

    def __post_init__(self) -> None:
        import gssapi

        self._gssapi = gssapi
        self.replays = HandshakeTable(self.options.max_replay_entries, self.options.replay_window, self.clock)
        # MIT opens the keytab at each accept: a keytab rewritten by a new `mitm407 kdc` run is picked up.
        try:
            self.credentials: Any = gssapi.Credentials(usage="accept", store={"keytab": self.options.keytab})
        except gssapi.exceptions.GSSError as e:  # fail closed: every token is then refused with this reason
            self.credentials, self._broken = None, gss_reason(e)

    def _refused(self, result: Result, reason: str, user: str | None = None) -> Accepted:
        return Accepted(AuthResult(result, reason, self.scheme, user))

    def accept(self, token: bytes) -> Accepted:
        """Verify one AP-REQ; any failure is a refusal with a secret-free reason, never an exception."""
        digest = hashlib.sha256(token).hexdigest()
        if digest in self.replays:
            return self._refused(Result.BAD_CREDENTIALS, "replayed Kerberos token (this AP-REQ was accepted before)")
        gssapi = self._gssapi
        if self.credentials is None:
            return self._refused(Result.BAD_CREDENTIALS, f"Kerberos keytab unusable: {self._broken}")
        try:
            context = gssapi.SecurityContext(creds=self.credentials, usage="accept")
            reply = context.step(token)
            complete = context.complete
            principal = str(context.initiator_name) if complete else ""
            service = str(context.target_name) if complete and context.target_name is not None else ""
        except gssapi.exceptions.GSSError as e:
            return self._refused(Result.BAD_CREDENTIALS, f"Kerberos token refused: {gss_reason(e)}")
        except Exception:  # the C library's parser of hostile bytes: any other failure means malformed
            return self._refused(Result.MALFORMED, "Kerberos token cannot be parsed")
        if not complete:
            return self._refused(Result.MALFORMED, "Kerberos exchange needs more than one round (not supported)")
        shown = printable(principal, 120)
        wanted = self.options.principal
        if wanted is not None and not matches(service, wanted):
            return self._refused(
                Result.BAD_CREDENTIALS,
                f"Kerberos ticket is for '{printable(service, 120)}', this proxy accepts '{wanted}'",
                shown,
            )
        self.replays.put(digest, True)
        mutual = " with mutual authentication" if reply else ""
        reason = f"Kerberos ticket accepted for '{shown}'{mutual}; connection authenticated"
        auth = AuthResult(Result.OK, reason, self.scheme, shown, via_connection=True)
        return Accepted(auth, reply or None)


def gss_reason(error: Any) -> str:
    """The library's own words (the minor status names the Kerberos error), on one safe line.

    MIT's messages name principals and error kinds ("Clock skew too great",
    "Ticket expired", "Cannot find key of appropriate type to decrypt AP REQ"),
    never key or ticket bytes.
    """
    try:
        text = error.gen_message()
    except Exception:  # a status the library cannot display
        return f"GSS-API error {getattr(error, 'maj_code', '?')}"
    _, found, minor = text.partition("Minor (")
    if found:
        _, _, minor = minor.partition("): ")
        if minor and minor != "Unknown error":
            text = minor
    return printable(" ".join(text.split()), 200)
