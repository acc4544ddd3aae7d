"""The shipped fault scenarios do what their header comments say, with real clients.

One mitmdump per scenario, started on first use and kept for the module.
Time-based scenarios (password-rotation, reauth-every) are covered by the
engine's unit tests with a fake clock instead.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import warnings

import pytest

from mitm407.faults.base import Pacer, Trigger
from procs import curl

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shipped(module_mitmdump):
    started: dict = {}

    def start(name: str):
        if name not in started:
            started[name] = module_mitmdump(options={"scenario": name})
        return started[name]

    return start


def status(result) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1])


def with_creds(proxy, user: str, password: str) -> str:
    return proxy.proxy_url(user, password)


def urllib_open(proxy, url: str, user: str, password: str, realm: str | None = None):
    handler = urllib.request.ProxyBasicAuthHandler(urllib.request.HTTPPasswordMgrWithDefaultRealm())
    handler.add_password(realm, f"127.0.0.1:{proxy.port}", user, password)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}), handler)
    return opener.open(url, timeout=10)


def test_ci_no_credentials(shipped, origin):
    proxy = shipped("ci-no-credentials")
    result = curl("-x", proxy.url, origin.url("/ci"))
    assert status(result) == 407 and "no Proxy-Authorization header" in result.stdout
    assert status(curl("-x", with_creds(proxy, "ci-bot", "build-1234"), origin.url("/ci"))) == 200


def test_expired_credentials(shipped, origin):
    proxy = shipped("expired-credentials")
    codes = [status(curl("-x", with_creds(proxy, "alice", "summer-2024"), origin.url("/"))) for _ in range(7)]
    assert codes == [200] * 5 + [407, 407]


def test_account_lockout(shipped, origin):
    proxy = shipped("account-lockout")
    assert [status(curl("-x", with_creds(proxy, "carol", "nope"), origin.url("/"))) for _ in range(3)] == [407] * 3
    locked = curl("-x", with_creds(proxy, "carol", "correct-horse"), origin.url("/"))
    assert status(locked) == 403
    assert "user 'carol' is locked out for 300 more seconds after 3 failed logins" in locked.stdout


def test_auth_backend_down_curl_gives_up_after_one_retry(shipped, origin):
    proxy = shipped("auth-backend-down")
    result = curl("-v", "--proxy-anyauth", "-x", with_creds(proxy, "dave", "ldap-is-down"), origin.url("/"))
    assert status(result) == 407
    assert result.stderr.count("> GET http://") == 2  # without, then with Basic; then it stops


def test_unquoted_realm_urllib_warns_and_passes(shipped, origin):
    proxy = shipped("unquoted-realm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert urllib_open(proxy, origin.url("/u"), "frank", "quoted-please").status == 200  # any realm
        # urllib reads the realm as 'Corporate Proxy, charset=': credentials for the real realm are not found
        with pytest.raises(urllib.error.HTTPError, match="407"):
            urllib_open(proxy, origin.url("/u"), "frank", "quoted-please", realm="Corporate Proxy")
    assert "Basic Auth Realm was unquoted" in [str(w.message) for w in caught]
    result = curl("--proxy-anyauth", "-x", with_creds(proxy, "frank", "quoted-please"), origin.url("/u"))
    assert status(result) == 200


def test_unknown_scheme_only(shipped, origin):
    proxy = shipped("unknown-scheme-only")
    assert status(curl("--proxy-anyauth", "-x", with_creds(proxy, "gina", "sso-only"), origin.url("/"))) == 407
    assert status(curl("-x", with_creds(proxy, "gina", "sso-only"), origin.url("/"))) == 200
    with pytest.raises(ValueError, match="does not support the following scheme: 'X-Corp-SSO'"):
        urllib_open(proxy, origin.url("/"), "gina", "sso-only")


def test_unknown_scheme_first(shipped, origin):
    proxy = shipped("unknown-scheme-first")
    assert status(curl("--proxy-anyauth", "-x", with_creds(proxy, "hank", "pick-basic"), origin.url("/"))) == 200
    assert urllib_open(proxy, origin.url("/"), "hank", "pick-basic").status == 200


def test_close_after_407_curl_reconnects(shipped, origin):
    proxy = shipped("close-after-407")
    result = curl("-v", "--proxy-anyauth", "-x", with_creds(proxy, "ivan", "reconnect"), origin.url("/"))
    assert status(result) == 200
    assert "< Connection: close" in result.stderr
    assert result.stderr.count("Connected to 127.0.0.1") == 2  # a new connection for the answer


def test_tunnel_reset(shipped, origin):
    proxy = shipped("tunnel-reset")
    result = curl("-k", "--http1.1", "-x", with_creds(proxy, "judy", "tunnel-ok"), "https://example.test/")
    assert result.returncode == 52, result.stderr
    assert status(curl("-x", with_creds(proxy, "judy", "tunnel-ok"), origin.url("/"))) == 200


def test_flaky_proxy_drops_the_seeded_requests(shipped, origin):
    proxy = shipped("flaky-proxy")
    pacer = Pacer(Trigger(probability=0.25, seed=7))
    expected = [0 if pacer.fires() else 200 for _ in range(8)]
    codes = [status(curl("-x", with_creds(proxy, "kim", "try-again"), origin.url("/"))) for _ in range(8)]
    assert codes == expected and 0 in codes and 200 in codes


def test_web_filter_block_page(shipped, origin):
    proxy = shipped("web-filter-block-page")
    result = curl("-i", "-x", proxy.url, origin.url("/"))
    assert status(result) == 200
    assert "Content-Type: text/html; charset=utf-8" in result.stdout and "Proxy-Authenticate" not in result.stdout
    assert status(curl("-x", with_creds(proxy, "lena", "signed-in"), origin.url("/"))) == 200


def test_login_redirect(shipped, origin):
    proxy = shipped("login-redirect")
    result = curl("-i", "--proxy-anyauth", "-x", with_creds(proxy, "mona", "portal"), origin.url("/"))
    assert status(result) == 307 and "Location: http://login.proxy.invalid/" in result.stdout
    assert status(curl("-x", with_creds(proxy, "mona", "portal"), origin.url("/"))) == 200


def test_wrong_status_401(shipped, origin):
    proxy = shipped("wrong-status-401")
    result = curl("-i", "--proxy-anyauth", "-x", with_creds(proxy, "nina", "not-origin"), origin.url("/"))
    assert status(result) == 401
    assert 'WWW-Authenticate: Basic realm="CORP", charset="UTF-8"' in result.stdout
    assert status(curl("-x", with_creds(proxy, "nina", "not-origin"), origin.url("/"))) == 200


def test_leaky_proxy(shipped, origin):
    proxy = shipped("leaky-proxy")
    assert status(curl("-x", with_creds(proxy, "oscar", "do-not-leak"), origin.url("/leak"))) == 200
    assert origin.seen[-1].headers["proxy-authorization"] == "Basic b3NjYXI6ZG8tbm90LWxlYWs="


def test_https_only_auth(shipped, origin, tls_origin):
    proxy = shipped("https-only-auth")
    assert status(curl("-x", proxy.url, origin.url("/"))) == 200
    https = curl("-k", "-x", proxy.url, tls_origin.url("/"))
    assert https.returncode == 56 and "407" in https.stderr
    assert status(curl("-k", "-x", with_creds(proxy, "paul", "tunnel-basic"), tls_origin.url("/"))) == 200


def test_challenge_missing(shipped, origin):
    proxy = shipped("challenge-missing")
    assert status(curl("--proxy-anyauth", "-x", with_creds(proxy, "erin", "no-challenge"), origin.url("/"))) == 407
    assert status(curl("-x", with_creds(proxy, "erin", "no-challenge"), origin.url("/"))) == 200
