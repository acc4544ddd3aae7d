"""HTTPS proxies: TLS between the client and mitm407 itself (``curl -x https://``), with Basic, Digest and NTLM.

mitmproxy's regular mode accepts TLS from the client on the proxy port and
presents a certificate for the proxy's address signed by its CA
(``confdir/mitmproxy-ca-cert.pem``): clients that verify the proxy trust that CA.
Reported client bugs: urllib3/urllib3#2400, mitmproxy/mitmproxy#4154.
"""

from __future__ import annotations

import ssl

import httpx
import pytest
import requests

from procs import curl, register_secret

pytestmark = pytest.mark.e2e

DEMO = "mitm407"  # the default scenario's public demo password: also the product's name, so not a scannable secret
ALICE = register_secret("alice", "s3cret:with:colons")


@pytest.fixture(scope="module")
def basic(module_mitmdump):
    return module_mitmdump(options={"scenario": "default"})


@pytest.fixture(scope="module")
def digest(module_mitmdump):
    return module_mitmdump(options={"scenario": "digest"})


@pytest.fixture(scope="module")
def ntlm(module_mitmdump):
    return module_mitmdump(options={"scenario": "ntlm"})


def tls_proxy(dump) -> str:
    return f"https://127.0.0.1:{dump.port}"


def test_curl_basic_over_tls_to_the_proxy_verifying_its_ca(basic, origin):
    without = curl("-x", tls_proxy(basic), "--proxy-cacert", basic.ca_file, origin.url("/tls-proxy"))
    passed = curl("-x", tls_proxy(basic), "--proxy-cacert", basic.ca_file, "--proxy-user", f"demo:{DEMO}",
                  origin.url("/tls-proxy"))
    assert without.stdout.endswith("407") and passed.stdout.endswith("200"), passed.stderr


def test_curl_refuses_an_untrusted_proxy_certificate(basic, origin):
    """Without the proxy's CA a verifying client stops at the TLS handshake: nothing is sent in clear."""
    result = curl("-x", tls_proxy(basic), "--proxy-user", f"demo:{DEMO}", origin.url("/untrusted"))
    assert result.returncode == 60 and result.stdout.endswith("000"), result.stderr  # curl: peer cert not trusted


def test_curl_tls_in_tls_to_an_https_origin(basic, tls_origin):
    """HTTPS origin through an HTTPS proxy: a TLS tunnel inside TLS to the proxy; 407 at the CONNECT."""
    without = curl("-x", tls_proxy(basic), "--proxy-cacert", basic.ca_file, "-k", tls_origin.url("/tlstls"))
    passed = curl("-x", tls_proxy(basic), "--proxy-cacert", basic.ca_file, "-k", "--proxy-user", f"demo:{DEMO}",
                  tls_origin.url("/tlstls"))
    assert "CONNECT tunnel failed, response 407" in without.stderr
    assert passed.stdout.endswith("200"), passed.stderr


def test_curl_digest_over_tls_to_the_proxy(digest, origin):
    result = curl("-x", tls_proxy(digest), "--proxy-cacert", digest.ca_file, "--proxy-digest",
                  "-U", f"alice:{ALICE}", origin.url("/tls-digest"))
    assert result.stdout.endswith("200"), result.stderr


def test_curl_ntlm_over_tls_to_the_proxy(ntlm, origin):
    """NTLM binds to the connection; over TLS to the proxy the handshake's three legs share one TLS session."""
    result = curl("-x", tls_proxy(ntlm), "--proxy-cacert", ntlm.ca_file, "--proxy-ntlm",
                  "-U", f"alice:{ALICE}", origin.url("/tls-ntlm"))
    wrong = curl("-x", tls_proxy(ntlm), "--proxy-cacert", ntlm.ca_file, "--proxy-ntlm",
                 "-U", "alice:wrong", origin.url("/tls-ntlm"))
    assert result.stdout.endswith("200") and wrong.stdout.endswith("407"), result.stderr


def test_requests_urllib3_2_https_proxy_is_not_verified_for_http_urls(basic, origin):
    """requests/urllib3 2 talk TLS to an https:// proxy, but for an http:// URL they do not verify its
    certificate (whatever ``verify`` says) and only warn: a client behaviour worth knowing (docs/https-proxy.md)."""
    import urllib3

    proxy = f"https://demo:{DEMO}@127.0.0.1:{basic.port}"
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
        response = requests.get(origin.url("/requests-tls-proxy"), proxies={"http": proxy},
                                verify="/etc/ssl/certs/ca-certificates.crt", timeout=20)  # does not hold the proxy's CA
    refused = requests.get(origin.url("/requests-tls-proxy"), proxies={"http": tls_proxy(basic)},
                           verify=basic.ca_file, timeout=20)
    assert (response.status_code, refused.status_code) == (200, 407)


def test_httpx_https_proxy(basic, origin):
    """httpx verifies the proxy with the proxy's own ``ssl_context`` (``verify`` is for the origin)."""
    context = ssl.create_default_context(cafile=basic.ca_file)
    proxy = httpx.Proxy(f"https://demo:{DEMO}@127.0.0.1:{basic.port}", ssl_context=context)
    with httpx.Client(proxy=proxy, timeout=20) as client:
        assert client.get(origin.url("/httpx-tls-proxy")).status_code == 200
    with httpx.Client(proxy=httpx.Proxy(tls_proxy(basic), ssl_context=context), timeout=20) as client:
        assert client.get(origin.url("/httpx-tls-proxy")).status_code == 407
    with httpx.Client(proxy=tls_proxy(basic), timeout=20) as client, pytest.raises(httpx.ConnectError):
        client.get(origin.url("/httpx-tls-proxy"))  # the system CAs do not know mitmproxy's CA


def test_the_shipped_tls_to_proxy_scenario_as_its_header_says(module_mitmdump, origin):
    register_secret("tina", "tls-basic")
    dump = module_mitmdump(options={"scenario": "tls-to-proxy"})
    proxy = tls_proxy(dump)
    assert curl("-x", proxy, "--proxy-cacert", dump.ca_file, origin.url("/t")).stdout.endswith("407")
    passed = curl("-x", proxy, "--proxy-cacert", dump.ca_file, "--proxy-user", "tina:tls-basic", origin.url("/t"))
    assert passed.stdout.endswith("200")
    assert curl("-x", proxy, "--proxy-user", "tina:tls-basic", origin.url("/t")).returncode == 60
