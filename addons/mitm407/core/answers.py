"""The answers this proxy makes itself: 407 (or 401 in reverse mode) and 403.

Pure: returns an ``Answer`` value; ``addon.py`` turns it into an
``http.Response``. The body tells a human what happened and how to
authenticate, without echoing any credential.
"""

from __future__ import annotations

from dataclasses import dataclass

from mitm407.core.results import AuthResult

REASONS = {401: "Unauthorized", 403: "Forbidden", 407: "Proxy Authentication Required"}


def credentials_header(is_proxy: bool) -> str:
    """Where the client puts credentials: for a proxy (407) or for a server (401)."""
    return "Proxy-Authorization" if is_proxy else "Authorization"


def credentials_field(is_proxy: bool) -> bytes:
    """``credentials_header`` as the lower-case bytes ``headerfields`` compares raw fields with."""
    return b"proxy-authorization" if is_proxy else b"authorization"


# A proxy's authentication response headers and their names when this proxy acts as the server (reverse mode).
SERVER_HEADER = {"proxy-authenticate": "WWW-Authenticate", "proxy-authentication-info": "Authentication-Info"}


def as_server_header(name: str) -> str:
    """``Proxy-Authenticate`` (a Negotiate mutual-auth token on the 200) is ``WWW-Authenticate`` from a server
    (RFC 4559); ``Proxy-Authentication-Info`` is ``Authentication-Info`` (RFC 7615). Others are unchanged."""
    return SERVER_HEADER.get(name.lower(), name)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str
    reason: str = ""
    close: bool = False  # send Connection: close (faults use it)
    complete: bool = False  # headers are the whole header block (a scenario's response shape)

    @property
    def reason_phrase(self) -> str:
        return self.reason or REASONS.get(self.status, "")


def build_challenge(
    auth: AuthResult, challenges: list[str], is_proxy: bool, hop_name: str
) -> Answer:
    """A 407 with one ``Proxy-Authenticate`` per challenge (401/``WWW-Authenticate`` in reverse mode)."""
    status, header = (407, "Proxy-Authenticate") if is_proxy else (401, "WWW-Authenticate")
    cred_header = credentials_header(is_proxy)
    how = (
        "curl --proxy-user USER:PASSWORD, or HTTP_PROXY=http://USER:PASSWORD@HOST:PORT"
        if is_proxy
        else "curl --user USER:PASSWORD"
    )
    offered = "\n".join(f"  {header}: {c}" for c in challenges)
    body = (
        f"{status} {REASONS[status]}\n\n"
        f"{hop_name} (mitm407) refused this request: {auth.reason}.\n"
        f"Send credentials in a {cred_header} header for one of these challenges:\n"
        f"{offered}\n"
        f"For example: {how}\n"
    )
    # A handshake's next challenge (NTLM type 2) is named by the scheme for a proxy; in reverse mode it is a 401's.
    extra = tuple((header if k == "Proxy-Authenticate" else k, v) for k, v in auth.headers)
    headers = tuple((header, c) for c in challenges) + extra
    return Answer(status, headers, body)


def build_denial(auth: AuthResult, hop_name: str) -> Answer:
    """A 403 for a ``deny`` rule: credentials would not help, so no challenge."""
    body = f"403 Forbidden\n\n{hop_name} (mitm407) refused this request: {auth.reason}.\n"
    return Answer(403, (), body)
