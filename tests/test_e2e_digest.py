"""End to end: Digest (RFC 7616) through real mitmdump with real clients.

curl 7.88 (--proxy-digest, --proxy-anyauth, userhash, CONNECT), CPython
urllib's ProxyDigestAuthHandler, and raw sockets for what no client does on
purpose (replays, auth-int, malformed parameters).
"""

from __future__ import annotations

import textwrap
import time
import urllib.request

import pytest

from digestclient import answer
from mitm407.wire.authparams import parse_auth_params, parse_challenges
from procs import REPO, advance_clock, curl, free_port, raw_exchange, run

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret:with:colons"  # the shipped scenarios' demo password
MIXED = textwrap.dedent(
    """\
    version: 1
    name: e2e-digest
    realm: "Digest Test"
    users:
      alice: "s3cret:with:colons"
    schemes: [{schemes}]
    digest:
      algorithms: [SHA-256, MD5]
      qop: [auth, auth-int]
      nonce_ttl: {ttl}
      userhash: {userhash}
    """
)


def status_of(result) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1])


def start(
    factory, tmp_path_factory, schemes: str = "digest, basic", ttl: int = 300, userhash: str = "false", **options: str
):
    path = tmp_path_factory.mktemp("digest") / "s.yaml"
    path.write_text(MIXED.format(schemes=schemes, ttl=ttl, userhash=userhash), encoding="utf-8")
    return factory(options={"scenario": str(path), **options})


@pytest.fixture(scope="module")
def md5_first(module_mitmdump):
    return module_mitmdump(options={"scenario": str(REPO / "scenarios" / "digest.yaml")})


@pytest.fixture(scope="module")
def sha256_only(module_mitmdump):
    return module_mitmdump(options={"scenario": str(REPO / "scenarios" / "digest-sha256-only.yaml")})


@pytest.fixture(scope="module")
def mixed(module_mitmdump, tmp_path_factory):
    """[digest, basic], SHA-256 before MD5, auth and auth-int, userhash offered, nonces live 60 s
    of the proxy's clock, which the control API moves forward (``mixed.control_port``)."""
    port = free_port()
    proxy = start(module_mitmdump, tmp_path_factory, ttl=60, userhash="true", control_port=str(port))
    proxy.wait_for_log("control API on")
    proxy.control_port = port
    return proxy


@pytest.fixture(scope="module")
def by_order(module_mitmdump, tmp_path_factory):
    """The same users and Digest options, offered as [digest, basic] and as [basic, digest]."""
    return {
        order: start(module_mitmdump, tmp_path_factory, schemes=order) for order in ("digest, basic", "basic, digest")
    }


def sent_proxy_auth(stderr: str) -> list[str]:
    return [line[2:] for line in stderr.splitlines() if line.startswith("> Proxy-Authorization: ")]


def received(stderr: str, header: str) -> list[str]:
    prefix = f"< {header}: "
    return [line[len(prefix) :].strip() for line in stderr.splitlines() if line.startswith(prefix)]


# -- curl ------------------------------------------------------------------------


def test_curl_proxy_digest_md5_first(md5_first, origin):
    before = len(origin.seen)
    result = curl("-v", "-x", md5_first.url, "--proxy-digest", "-U", f"alice:{PASSWORD}", origin.url("/md5"))
    assert status_of(result) == 200, result.stderr
    [authorization] = sent_proxy_auth(result.stderr)
    assert "algorithm=MD5" in authorization and "qop=auth" in authorization
    assert "Ignoring duplicate digest auth header." in result.stderr  # curl answers the first Digest only
    [info] = received(result.stderr, "Proxy-Authentication-Info")
    assert parse_auth_params(info).keys() == {"nextnonce", "qop", "rspauth", "cnonce", "nc"}
    assert [s.path for s in origin.seen[before:]] == ["/md5"]
    assert "proxy-authorization" not in origin.seen[-1].headers  # stripped before the origin


def test_curl_proxy_digest_sha256_plain_and_connect(sha256_only, origin, tls_origin):
    plain = curl("-v", "-x", sha256_only.url, "--proxy-digest", "-U", f"alice:{PASSWORD}", origin.url("/sha"))
    assert status_of(plain) == 200, plain.stderr
    assert "algorithm=SHA-256" in sent_proxy_auth(plain.stderr)[0]
    tunnel = curl(
        "-v", "-k", "-x", sha256_only.url, "--proxy-digest", "-U", f"alice:{PASSWORD}", tls_origin.url("/tls")
    )
    assert status_of(tunnel) == 200, tunnel.stderr
    [connect_auth] = sent_proxy_auth(tunnel.stderr)
    assert f'uri="127.0.0.1:{tls_origin.port}"' in connect_auth  # CONNECT's uri is the authority
    assert len(received(tunnel.stderr, "Proxy-Authentication-Info")) == 1  # on the CONNECT's 200
    assert "proxy-authorization" not in tls_origin.seen[-1].headers


def test_curl_wrong_password_gets_407_with_reason(sha256_only, origin):
    result = curl("-x", sha256_only.url, "--proxy-digest", "-U", "alice:wrong", origin.url("/nope"))
    assert status_of(result) == 407
    assert "wrong response for user 'alice'" in result.stdout
    assert "mitm407: 127.0.0.1 GET" in sha256_only.wait_for_log("bad-credentials (wrong response for user 'alice'")


def test_curl_userhash(mixed, origin):
    result = curl("-v", "-x", mixed.url, "--proxy-digest", "-U", f"alice:{PASSWORD}", origin.url("/userhash"))
    assert status_of(result) == 200, result.stderr
    [authorization] = sent_proxy_auth(result.stderr)
    assert "userhash=true" in authorization and 'username="alice"' not in authorization
    assert "qop=auth," in authorization  # offered "auth, auth-int": curl takes auth


@pytest.mark.parametrize("schemes", ["digest, basic", "basic, digest"])
def test_curl_anyauth_picks_digest_whatever_the_order(schemes, by_order, origin):
    """curl --proxy-anyauth picks the safest scheme it knows, not the first offered."""
    proxy = by_order[schemes]
    result = curl("-v", "-x", proxy.url, "--proxy-anyauth", "-U", f"alice:{PASSWORD}", origin.url("/any"))
    assert status_of(result) == 200, result.stderr
    offered = [c.split()[0] for c in received(result.stderr, "Proxy-Authenticate")]
    assert offered == ["Digest", "Digest", "Basic"] if schemes.startswith("digest") else ["Basic", "Digest", "Digest"]
    [authorization] = sent_proxy_auth(result.stderr)
    assert authorization.startswith("Proxy-Authorization: Digest ") and "algorithm=SHA-256" in authorization


def test_curl_retries_transparently_on_stale_nonce(mixed, origin):
    """The origin redirects after the nonce expired: curl's follow-up reuses the old
    nonce (nc=2), gets a 407 with stale=true, and retries with the new nonce
    without failing."""

    def late_redirect(handler, body):
        advance_clock(mixed.control_port, 61)  # nonce_ttl is 60 s: the nonce ages, nobody sleeps
        return 302, {"Location": "/after-stale"}, b""

    origin.routes["/slow-redirect"] = late_redirect
    result = curl(
        "-v", "-L", "-x", mixed.url, "--proxy-digest", "-U", f"alice:{PASSWORD}", origin.url("/slow-redirect")
    )
    assert status_of(result) == 200, result.stderr
    stale = [c for c in received(result.stderr, "Proxy-Authenticate") if "stale=true" in c]
    assert len(stale) == 2  # one 407, two Digest challenges (SHA-256, MD5), both stale=true
    authorizations = sent_proxy_auth(result.stderr)
    nonces = [parse_auth_params(a.split(" ", 2)[2])["nonce"] for a in authorizations]
    assert len(authorizations) == 3 and nonces[0] == nonces[1] != nonces[2]
    assert "stale (nonce expired " in mixed.log and " s ago (nonce_ttl 60 s)" in mixed.log  # the clock moved, not time


# -- CPython urllib ------------------------------------------------------------------


def urllib_open(proxy, url: str):
    manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    # urllib's Digest handler looks the password up by the *target* URL
    # (req.full_url), even for a proxy: registering the proxy alone fails.
    manager.add_password(None, url, "alice", PASSWORD)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": proxy.url}), urllib.request.ProxyDigestAuthHandler(manager)
    )
    with opener.open(url, timeout=20) as response:
        return response.status, response.headers


def test_urllib_digest_md5(md5_first, origin):
    status, headers = urllib_open(md5_first, origin.url("/urllib"))
    assert status == 200 and "nextnonce=" in headers["Proxy-Authentication-Info"]


def test_urllib_fails_on_sha256_only(sha256_only, origin):
    """cpython#128192: urllib knows MD5 and SHA only."""
    with pytest.raises(ValueError, match="Unsupported digest authentication algorithm 'SHA-256'"):
        urllib_open(sha256_only, origin.url("/urllib"))


def test_urllib_reads_only_the_first_challenge(mixed, origin):
    """MD5 is offered too, second: urllib never looks past the first header."""
    with pytest.raises(ValueError, match="Unsupported digest authentication algorithm 'SHA-256'"):
        urllib_open(mixed, origin.url("/urllib"))


# -- raw requests: replay, auth-int, malformed -----------------------------------------


def digest_challenges(proxy, origin) -> list:
    """The Digest challenges of the proxy's 407 to a request without credentials."""
    request = f"GET {origin.url('/c')} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n\r\n".encode()
    [response] = raw_exchange(proxy.port, [request])
    head = response.partition(b"\r\n\r\n")[0].decode()
    values = [line.split(": ", 1)[1] for line in head.split("\r\n") if line.startswith("Proxy-Authenticate: ")]
    return [c for c in parse_challenges(values) if c.scheme == "Digest"]


def challenge_nonce(proxy, origin) -> str:
    return digest_challenges(proxy, origin)[0].params["nonce"]


def offered_algorithms(proxy, origin) -> list[str]:
    return [c.params["algorithm"] for c in digest_challenges(proxy, origin)]


def authed_request(origin, credentials: str, method: str = "GET", body: bytes = b"") -> bytes:
    return (
        f"{method} {origin.url('/r')} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n"
        f"Proxy-Authorization: Digest {credentials}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_replayed_nc_refused(sha256_only, origin):
    nonce = challenge_nonce(sha256_only, origin)
    creds = answer(
        user="alice", password=PASSWORD, realm="mitm407-digest", nonce=nonce, uri=origin.url("/r"), algorithm="SHA-256"
    )
    first, replay = raw_exchange(sha256_only.port, [authed_request(origin, creds), authed_request(origin, creds)])
    assert first.startswith(b"HTTP/1.1 200 ")
    assert replay.startswith(b"HTTP/1.1 407 ")
    assert b"nc 00000001 was already used with this nonce (replay)" in replay


def test_auth_int_checks_the_body(mixed, origin):
    nonce = challenge_nonce(mixed, origin)
    ok = {"user": "alice", "password": PASSWORD, "realm": "Digest Test", "uri": origin.url("/r"), "nonce": nonce}
    creds = answer(**ok, method="POST", algorithm="SHA-256", qop="auth-int", body=b"hello")
    tampered = answer(**ok, method="POST", algorithm="SHA-256", qop="auth-int", body=b"hello", nc="00000002")
    good, bad = raw_exchange(
        mixed.port,
        [authed_request(origin, creds, "POST", b"hello"), authed_request(origin, tampered, "POST", b"HELLO")],
    )
    assert good.startswith(b"HTTP/1.1 200 "), good
    assert b"qop=auth-int" in good and b"rspauth" not in good
    assert bad.startswith(b"HTTP/1.1 407 ") and b"wrong response for user 'alice'" in bad


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        ('username="alice, realm=x', b"unterminated quoted string"),
        ('username="alice", realm="x"', b"Digest credentials lack 'nonce', 'uri', 'response'"),
        ('username="a", username="b", realm="r", nonce="n", uri="/", response="x"', b"'username' appears twice"),
        ('username="' + "a" * 5000 + '"', b"parameter value too long"),
        ("username=alice realm=x", b"unexpected 'r' after parameter 'username'"),
        (
            'username="alice", realm="Digest Test", nonce="forged", uri="/", response="0", '
            "qop=auth, nc=00000001, cnonce=c",
            b"not issued by this proxy",
        ),
    ],
)
def test_malformed_credentials_get_407_never_a_crash(mixed, origin, credentials, reason):
    [response] = raw_exchange(mixed.port, [authed_request(origin, credentials)])
    assert response.startswith(b"HTTP/1.1 407 ") and reason in response


# -- every algorithm with curl (one proxy, the scenario rewritten and hot-reloaded) ------

CURL_VERSION = tuple(int(x) for x in run(["curl", "--version"]).stdout.split()[1].split(".")[:2])


@pytest.fixture(scope="module")
def reloading(module_mitmdump, tmp_path_factory):
    path = tmp_path_factory.mktemp("algorithms") / "s.yaml"
    path.write_text(MIXED.format(schemes="digest", ttl=300, userhash="false"), encoding="utf-8")
    return path, module_mitmdump(options={"scenario": str(path), "scenario_reload": "1"})


def offer_only(reloading, origin, algorithm: str):
    """Rewrite the scenario and wait until the proxy's 407 offers just ``algorithm``."""
    path, proxy = reloading
    text = MIXED.format(schemes="digest", ttl=300, userhash="false").replace("[SHA-256, MD5]", f"[{algorithm}]")
    path.write_text(text, encoding="utf-8")
    deadline = time.monotonic() + 15
    while offered_algorithms(proxy, origin) != [algorithm]:
        assert time.monotonic() < deadline, f"scenario not reloaded:\n{proxy.log[-2000:]}"
        time.sleep(0.2)
    return proxy


@pytest.mark.parametrize("algorithm", ["MD5-sess", "SHA-256-sess"])
def test_curl_sess_algorithms(reloading, origin, algorithm):
    proxy = offer_only(reloading, origin, algorithm)
    result = curl("-v", "-x", proxy.url, "--proxy-digest", "-U", f"alice:{PASSWORD}", origin.url("/sess"))
    assert status_of(result) == 200, result.stderr
    assert f"algorithm={algorithm}" in sent_proxy_auth(result.stderr)[0]


@pytest.mark.skipif(CURL_VERSION >= (8, 7), reason="curl 8.7+ computes SHA-512/256 (curl/curl#13070)")
def test_curl_788_answers_sha512_256_with_sha256(reloading, origin):
    """A client bug this proxy makes visible: curl before curl/curl#13070 (2024)
    accepts algorithm=SHA-512-256 but hashes with SHA-256, so the proxy refuses."""
    proxy = offer_only(reloading, origin, "SHA-512-256")
    result = curl("-v", "-x", proxy.url, "--proxy-digest", "-U", f"alice:{PASSWORD}", origin.url("/sha512"))
    assert status_of(result) == 407
    sent = parse_auth_params(sent_proxy_auth(result.stderr)[0].split(" ", 2)[2])
    assert sent["algorithm"] == "SHA-512-256"
    as_sha256 = answer(
        user="alice",
        password=PASSWORD,
        realm="Digest Test",
        nonce=sent["nonce"],
        uri=sent["uri"],
        algorithm="SHA-256",
        nc=sent["nc"],
        cnonce=sent["cnonce"],
    )
    assert parse_auth_params(as_sha256)["response"] == sent["response"]
    assert "wrong response for user 'alice'" in result.stdout


def test_reverse_mode_answers_with_the_servers_header_names(mitmdump_factory, origin):
    """Acting as the server (reverse mode): 401 + WWW-Authenticate, then Authentication-Info (RFC 7615), never
    the proxy's names nor a mangled 'Authentication-Info' made by cutting 'Proxy-' off."""
    dump = mitmdump_factory(options={"scenario": "digest"}, extra=["--mode", f"reverse:{origin.url('/')[:-1]}"])
    result = curl("-v", "--digest", "-u", f"alice:{PASSWORD}", f"http://127.0.0.1:{dump.port}/reverse")
    assert result.stdout.endswith("200"), result.stderr
    headers = result.stderr.lower()
    assert "< www-authenticate: digest" in headers and "< authentication-info: " in headers
    assert "proxy-authenticat" not in headers
