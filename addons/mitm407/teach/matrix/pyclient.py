"""One request through a proxy with a Python HTTP library (run as a subprocess).

    python pyclient.py LIBRARY URL PROXY_PORT [--user U --password P] [--challenge SCHEME] [--ca FILE]

Prints ``STATUS <code>`` or ``ERROR <Type>: <message>``. Credentials go the
way each library documents: in the proxy URL (percent-encoded), or, for
``--challenge``, to a handler that answers the 407 (urllib only, which has
Basic and Digest handlers: requests and httpx have none, so they get the URL
and send Basic preemptively).
"""

from __future__ import annotations

import argparse
import ssl
import sys
from urllib.parse import quote


def proxy_url(port: int, user: str | None, password: str | None) -> str:
    if user is None:
        return f"http://127.0.0.1:{port}"
    return f"http://{quote(user, safe='')}:{quote(password or '', safe='')}@127.0.0.1:{port}"


def with_urllib(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    handlers: list[urllib.request.BaseHandler] = []
    if args.challenge and args.user is not None:
        passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        # the Basic handler looks the password up by the proxy's host:port, the Digest one by the
        # target URL (AbstractDigestAuthHandler uses req.full_url): register both, as a user must
        for where in (f"127.0.0.1:{args.proxy_port}", args.url):
            passwords.add_password(None, where, args.user, args.password)
        handlers_by_scheme = {"digest": urllib.request.ProxyDigestAuthHandler}
        handler = handlers_by_scheme.get(args.challenge, urllib.request.ProxyBasicAuthHandler)
        handlers.append(handler(passwords))
        proxy = proxy_url(args.proxy_port, None, None)
    else:
        proxy = proxy_url(args.proxy_port, args.user, args.password)
    handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    if args.ca:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=args.ca)))
    try:
        with urllib.request.build_opener(*handlers).open(args.url, timeout=20) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def with_requests(args: argparse.Namespace) -> int:
    import requests

    proxy = proxy_url(args.proxy_port, args.user, args.password)
    response = requests.get(args.url, proxies={"http": proxy, "https": proxy}, verify=args.ca or True, timeout=20)
    return response.status_code


def with_httpx(args: argparse.Namespace) -> int:
    import httpx

    verify = ssl.create_default_context(cafile=args.ca) if args.ca else True
    proxy = proxy_url(args.proxy_port, args.user, args.password)
    with httpx.Client(proxy=proxy, verify=verify, timeout=20) as client:
        return client.get(args.url).status_code


LIBRARIES = {"urllib": with_urllib, "requests": with_requests, "httpx": with_httpx}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("library", choices=sorted(LIBRARIES))
    parser.add_argument("url")
    parser.add_argument("proxy_port", type=int)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--challenge", metavar="SCHEME", help="answer the 407 with this scheme's handler")
    parser.add_argument("--ca")
    args = parser.parse_args()
    try:
        print(f"STATUS {LIBRARIES[args.library](args)}")
    except Exception as e:  # the matrix reports what the client raised
        print(f"ERROR {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
