"""The matrix's columns: one ``Case`` per scenario situation, in display order.

Adding a case is one row in ``CASES``: the scenario file (in ``scenarios/``),
the user whose password the client gets (looked up in that scenario, so the
row never repeats a secret), how the client is configured and the status it
should end with. A row whose scenario file does not exist yet renders as
"n/a (scenario not available)", so rows for schemes other branches add can
wait here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Case:
    id: str  # stable key: --cases, test assertions
    title: str  # column header
    scenario: str  # file name in scenarios/
    user: str | None = None  # None: the client gets no credentials
    https: bool = False  # fetch from the TLS origin: CONNECT through the proxy
    challenge: bool = False  # client set up to wait for the 407 and answer it (curl --proxy-anyauth)
    expect: int = 200  # final status the client should report
    scheme: str = "basic"  # the auth scheme the client should use (curl --proxy-digest, ...)
    ticket: bool = False  # Kerberos: the runner starts a throwaway KDC and kinits ``user`` before the attempt
    proxy_tls: bool = False  # TLS to the proxy itself (https://127.0.0.1:PORT), verified with mitmproxy's CA
    explain: str = ""  # one line under the table


CASES: tuple[Case, ...] = (
    Case("basic", "Basic", "basic-passwords.yaml", user="plain", explain="ASCII user and password, plain HTTP."),
    Case(
        "basic-utf8",
        "Basic UTF-8",
        "basic-passwords.yaml",
        user="jürgen",
        explain="User and password with non-ASCII characters (one outside ISO-8859-1); RFC 7617 §2.1 charset=UTF-8.",
    ),
    Case(
        "basic-special",
        "Basic `@:#%`",
        "basic-passwords.yaml",
        user="special",
        explain="Password with `@ : # %` (percent-encoded where the client takes a proxy URL).",
    ),
    Case(
        "connect",
        "CONNECT",
        "basic-passwords.yaml",
        user="plain",
        https=True,
        explain="HTTPS through the proxy to a local TLS origin: Basic at the CONNECT.",
    ),
    Case(
        "proxy-tls",
        "TLS to the proxy",
        "basic-passwords.yaml",
        user="plain",
        proxy_tls=True,
        explain="The proxy URL is `https://127.0.0.1:PORT`: the client talks TLS to mitm407 itself (mitmproxy's "
        "regular mode accepts it on the same port) and is given mitmproxy's CA for the proxy's certificate where it "
        "has an option for it (curl `--proxy-cacert`, git `http.proxySSLCAInfo`, httpx `Proxy(ssl_context=)`, undici "
        "`proxyTls`); Basic, plain-HTTP origin (docs: HTTPS proxies).",
    ),
    Case(
        "no-credentials",
        "no credentials",
        "basic-passwords.yaml",
        expect=407,
        explain="No credentials configured: the client must surface the 407 (not hang, crash or retry forever).",
    ),
    Case(
        "anyauth",
        "anyauth (challenge)",
        "basic-passwords.yaml",
        user="plain",
        challenge=True,
        explain="Client set up to wait for the 407 challenge and answer it; ok only if the proxy saw a 407 first.",
    ),
    Case(
        "challenge-missing",
        "407 without challenge",
        "challenge-missing.yaml",
        user="erin",
        explain="The 407 has no Proxy-Authenticate (fault `challenge_missing`): only clients that send Basic "
        "preemptively get through; clients that wait for a challenge stop at the 407.",
    ),
    Case(
        "digest-md5",
        "Digest MD5",
        "digest.yaml",
        user="alice",
        challenge=True,
        scheme="digest",
        explain="Digest (RFC 7616), two challenges in one 407: MD5 first, then SHA-256; a client answers the "
        "first it supports. Password with colons.",
    ),
    Case(
        "digest-sha256",
        "Digest SHA-256",
        "digest-sha256-only.yaml",
        user="alice",
        challenge=True,
        scheme="digest",
        explain="Digest with algorithm=SHA-256 only, no MD5 (RFC 7616).",
    ),
    Case("ntlm", "NTLM", "ntlm.yaml", user="alice", challenge=True, scheme="ntlm", explain="NTLM handshake."),
    Case(
        "kerberos",
        "Negotiate/Kerberos",
        "negotiate-kerberos.yaml",
        user="alice",
        scheme="negotiate",
        ticket=True,
        explain="Negotiate-only proxy (no NTLM fallback) in a throwaway MIT KDC's realm `CORP.TEST`: the client holds "
        "a ticket for alice (kinit) and reaches the proxy as `localhost` (its key is for `HTTP/localhost`). curl "
        "`--proxy-negotiate -U :`; git `http.proxyAuthMethod=negotiate` with an empty user (`http://:@localhost`); "
        "Java with the realm's krb5.conf and `useSubjectCredsOnly=false`; other clients as usual (user and password).",
    ),
)


def select_by_id(table: tuple[T, ...], ids: list[str] | None, what: str) -> tuple[T, ...]:
    """The rows of ``table`` named in ``ids`` (all when None), in the given order; unknown ids raise ValueError."""
    if not ids:
        return table
    known = {row.id: row for row in table}  # type: ignore[attr-defined]
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"unknown {what}(s): {', '.join(unknown)} (known: {', '.join(known)})")
    return tuple(known[i] for i in ids)


def select_cases(ids: list[str] | None) -> tuple[Case, ...]:
    return select_by_id(CASES, ids, "case")
