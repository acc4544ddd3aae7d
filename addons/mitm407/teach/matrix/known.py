"""Known client limitations and bugs the matrix observes, with where they are documented.

A failing (or n/a) cell whose (client, case) is listed in ``KNOWN`` gets a
numbered note with this text; a passing cell listed in ``CAVEATS`` gets one
too, for a client that gets through in a way worth knowing about. Only list
what a public source (release notes, documentation, an issue) or the
matrix's own observation on this machine supports; say which.
"""

from __future__ import annotations

# (client id, case id) -> public reference for a behaviour that is a known client limitation or bug.
KNOWN: dict[tuple[str, str], str] = {
    ("curl", "basic-special"): "curl URL-decodes `--proxy-user`, as documented for CURLOPT_PROXYUSERPWD: `%41` is "
    "sent as `A`; write `%` as `%25`",
    ("git", "basic-special"): "git percent-decodes the credentials in `http.proxy` more than once (seen here: "
    "`%2541` and `%252541` both sent as `A`): a `%` followed by two hex digits cannot be sent",
    ("requests", "basic-utf8"): "requests encodes Basic credentials as ISO-8859-1: `€` raises UnicodeEncodeError",
    ("pip", "basic-utf8"): "pip uses requests, which encodes Basic credentials as ISO-8859-1",
    ("pip", "no-credentials"): "pip hides the 407: it reports no matching distribution instead",
    ("java", "connect"): "JDK 8u111+ disables Basic for CONNECT: `jdk.http.auth.tunneling.disabledSchemes=Basic`",
    ("requests", "anyauth"): "requests has no 407 handler: it sends Basic from the proxy URL, preemptively",
    ("httpx", "anyauth"): "httpx sends Basic from the proxy URL only; no 407 handling",
    ("node", "anyauth"): "node:http has no proxy support; the code must build Proxy-Authorization itself",
    ("pip", "anyauth"): "pip (requests) sends Basic from the proxy URL only",
    ("undici", "anyauth"): "undici's ProxyAgent sends Basic from the proxy URL (or `token`) preemptively; it does "
    "not answer a 407",
    ("git", "challenge-missing"): "git waits for a challenge (`http.proxyAuthMethod` defaults to `anyauth`); "
    "checked here: `-c http.proxyAuthMethod=basic` sends Basic preemptively and passes",
    ("java", "challenge-missing"): "HttpClient sends proxy credentials only in answer to a Proxy-Authenticate "
    "challenge, never preemptively",
    ("java-tunnel-basic", "challenge-missing"): "HttpClient sends proxy credentials only in answer to a "
    "Proxy-Authenticate challenge, never preemptively",
    ("java-urlconnection", "connect"): "JDK 8u111+ disables Basic for CONNECT: "
    "`jdk.http.auth.tunneling.disabledSchemes=Basic` (HttpURLConnection too)",
    ("java-urlconnection", "challenge-missing"): "HttpURLConnection asks its Authenticator only in answer to a "
    "Proxy-Authenticate challenge, never preemptively",
}

_NO_DIGEST = {
    "requests": "requests has no Digest for proxies (HTTPDigestAuth answers 401 only): it sends Basic from the "
    "proxy URL",
    "httpx": "httpx sends Basic from the proxy URL only; no Digest for proxies",
    "pip": "pip (requests) sends Basic from the proxy URL only, and hides the 407",
    "node": "node:http has no proxy support; the code must build Proxy-Authorization itself (here: Basic)",
    "undici": "undici's ProxyAgent sends Basic from the proxy URL (or `token`) preemptively; no Digest",
}
_NO_DIGEST["java"] = _NO_DIGEST["java-tunnel-basic"] = (
    "java.net.http.HttpClient answers Basic challenges only (OpenJDK's jdk.internal.net.http.AuthenticationFilter: "
    '"Implementation of Http Basic authentication")'
)
KNOWN.update({(client, case): text for client, text in _NO_DIGEST.items() for case in ("digest-md5", "digest-sha256")})
KNOWN[("urllib", "digest-sha256")] = (
    "urllib's ProxyDigestAuthHandler knows MD5 and SHA-1 only: ValueError for SHA-256 (python/cpython#128192; "
    "SHA-256 support from Python 3.14, python/cpython#128193)"
)

# Negotiate/Kerberos: the proxy offers nothing else, so a client without Negotiate support sends what it has
# (Basic from the proxy URL) and stops at the 407, as VS Code did (microsoft/vscode#13302).
_NO_NEGOTIATE = {
    "urllib": "urllib.request has proxy handlers for Basic and Digest only, no Negotiate: it sends Basic from the "
    "proxy URL",
    "requests": "requests has no Negotiate for proxies (Basic from the proxy URL); requests-gssapi answers 401 "
    "only (pythongssapi/requests-gssapi#35); requests-kerberos answers a 407 since requests/requests-kerberos#149, "
    "plain HTTP only",
    "httpx": "httpx sends Basic from the proxy URL only; httpx-gssapi has no Proxy-Authorization "
    "(pythongssapi/httpx-gssapi#3)",
    "pip": "pip (requests) sends Basic from the proxy URL only, no Negotiate, and hides the 407",
    "node": _NO_DIGEST["node"],
    "undici": "undici's ProxyAgent sends Basic from the proxy URL (or `token`) preemptively; no Negotiate",
    "java": _NO_DIGEST["java"],
    "java-tunnel-basic": _NO_DIGEST["java"],
}
KNOWN.update({(client, "kerberos"): text for client, text in _NO_NEGOTIATE.items()})

# TLS to the proxy: the JDK's proxy model is a host and port, with no way to ask for TLS to it.
_NO_PROXY_TLS_JAVA = (
    "the JDK has no HTTPS proxies: `java.net.Proxy.Type` is DIRECT, HTTP or SOCKS and a proxy is a host and port "
    "(`ProxySelector`, `http.proxyHost`), always spoken to in plain text (JDK API docs for java.net.Proxy.Type)"
)
KNOWN.update({(c, "proxy-tls"): _NO_PROXY_TLS_JAVA for c in ("java", "java-tunnel-basic", "java-urlconnection")})
KNOWN[("urllib", "proxy-tls")] = (
    "urllib given the https:// proxy for both `http` and `https` (as `http_proxy` and `https_proxy` do): the request, "
    "switched to the proxy's scheme, meets the `https` entry and urllib sends `CONNECT` to the proxy itself in plain "
    "text, Proxy-Authorization in clear (seen here); the request inside reaches mitmproxy with no destination (502). "
    "Checked here: with the proxy for `http` only, urllib talks TLS to it and verifies it with its HTTPS handler's "
    "context"
)

# (client id, case id) -> a passing cell's caveat, with its public reference.
CAVEATS: dict[tuple[str, str], str] = {
    ("requests", "proxy-tls"): "requests (urllib3 2) talks TLS to an https:// proxy but, for an http:// URL, does not "
    "verify its certificate and only warns (InsecureRequestWarning; urllib3/urllib3#2400); `verify=` is for the "
    "origin and requests has no option for the proxy's CA",
    ("pip", "proxy-tls"): "pip (vendored requests and urllib3 1.26) does not verify an https:// proxy's certificate "
    "for an http:// index either; `--cert` is for the index (urllib3/urllib3#2400)",
}
