"""One request through a proxy with a Python HTTP library (run as a subprocess).

    python pyclient.py LIBRARY URL PROXY_PORT [--proxy-host H] [--user U --password P] [--challenge SCHEME]
                       [--ca FILE] [--proxy-ca FILE]

Prints ``STATUS <code>`` or ``ERROR <Type>: <message>``. Credentials go the
way each library documents: in the proxy URL (percent-encoded), or, for
``--challenge``, to a handler that answers the 407 (urllib only, which has
Basic and Digest handlers: requests and httpx have none, so they get the URL
and send Basic preemptively). ``gssapi`` is no library of its own: urllib
with a Negotiate token that python-gssapi makes from the Kerberos ticket
cache, in a Proxy-Authorization header set by hand, which is what Python
code has to do (requests-gssapi and httpx-gssapi answer 401 only).

``--proxy-ca`` makes the proxy URL ``https://``: TLS to the proxy itself,
verified with that CA where the library has a place for it (urllib: its
HTTPS handler's context, which then serves the proxy; httpx: the proxy's own
``ssl_context``; requests has none: urllib3 does not verify the proxy of an
``http://`` URL, urllib3/urllib3#2400).
"""

from __future__ import annotations

import argparse
import ssl
import sys
from urllib.parse import quote


def proxy_url(args: argparse.Namespace, with_credentials: bool = True) -> str:
    """The proxy URL, with the user's credentials percent-encoded unless told otherwise."""
    scheme = "https" if args.proxy_ca else "http"
    where = f"{args.proxy_host}:{args.proxy_port}"
    if args.user is None or not with_credentials:
        return f"{scheme}://{where}"
    return f"{scheme}://{quote(args.user, safe='')}:{quote(args.password or '', safe='')}@{where}"


def trusting(*cafiles: str | None) -> ssl.SSLContext:
    """A verifying context that trusts the given CA files (the system's when none)."""
    given = [f for f in cafiles if f]
    context = ssl.create_default_context(cafile=given[0] if given else None)
    for cafile in given[1:]:
        context.load_verify_locations(cafile=cafile)
    return context


def with_urllib(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    handlers: list[urllib.request.BaseHandler] = []
    if args.challenge and args.user is not None:
        passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        # the Basic handler looks the password up by the proxy's host:port, the Digest one by the
        # target URL (AbstractDigestAuthHandler uses req.full_url): register both, as a user must
        for where in (f"{args.proxy_host}:{args.proxy_port}", args.url):
            passwords.add_password(None, where, args.user, args.password)
        handlers_by_scheme = {"digest": urllib.request.ProxyDigestAuthHandler}
        handler = handlers_by_scheme.get(args.challenge, urllib.request.ProxyBasicAuthHandler)
        handlers.append(handler(passwords))
        proxy = proxy_url(args, with_credentials=False)
    else:
        proxy = proxy_url(args)
    handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    if args.ca or args.proxy_ca:
        handlers.append(urllib.request.HTTPSHandler(context=trusting(args.ca, args.proxy_ca)))
    try:
        with urllib.request.build_opener(*handlers).open(args.url, timeout=20) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def with_requests(args: argparse.Namespace) -> int:
    import requests

    proxy = proxy_url(args)
    response = requests.get(args.url, proxies={"http": proxy, "https": proxy}, verify=args.ca or True, timeout=20)
    return response.status_code


def with_httpx(args: argparse.Namespace) -> int:
    import httpx

    verify = ssl.create_default_context(cafile=args.ca) if args.ca else True
    proxy: str | httpx.Proxy = proxy_url(args)
    if args.proxy_ca:  # the proxy's own context: ``verify`` is for the origin
        proxy = httpx.Proxy(proxy, ssl_context=trusting(args.proxy_ca))
    with httpx.Client(proxy=proxy, verify=verify, timeout=20) as client:
        return client.get(args.url).status_code


def with_gssapi(args: argparse.Namespace) -> int:
    """SPNEGO token for HTTP@<proxy host> from the ticket cache (KRB5CCNAME), sent with the first request."""
    import base64
    import urllib.error
    import urllib.request

    import gssapi

    spnego = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
    service = gssapi.Name(f"HTTP@{args.proxy_host}", gssapi.NameType.hostbased_service)
    token = gssapi.SecurityContext(name=service, mech=spnego, usage="initiate").step()
    proxy = proxy_url(args, with_credentials=False)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    header = {"Proxy-Authorization": f"Negotiate {base64.b64encode(token).decode()}"}
    request = urllib.request.Request(args.url, headers=header)
    try:
        with opener.open(request, timeout=20) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


LIBRARIES = {"urllib": with_urllib, "requests": with_requests, "httpx": with_httpx, "gssapi": with_gssapi}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("library", choices=sorted(LIBRARIES))
    parser.add_argument("url")
    parser.add_argument("proxy_port", type=int)
    parser.add_argument("--proxy-host", default="127.0.0.1", help="Kerberos: the name its service key is for")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--challenge", metavar="SCHEME", help="answer the 407 with this scheme's handler")
    parser.add_argument("--ca")
    parser.add_argument("--proxy-ca", help="talk TLS to the proxy (https://), trusting this CA for it")
    args = parser.parse_args()
    try:
        print(f"STATUS {LIBRARIES[args.library](args)}")
    except Exception as e:  # the matrix reports what the client raised
        print(f"ERROR {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
