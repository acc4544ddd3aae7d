"""Capture's pure parts: parsing challenges, dropping secrets, inferring the scenario."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from mitm407.capture.files import CaptureFileError, observations_from_har
from mitm407.capture.infer import CaptureError, body_template, generated_value, infer_scenario, map_challenges
from mitm407.capture.observe import REDACTED, make_observation, read_challenge, scrub
from mitm407.scenario.load import parse_scenario
from mitm407.wire.authparams import Challenge

# RFC 7616 §3.9.1
RFC_DIGEST = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
PASSWORD = "Pa55:word%40!"
TOKEN = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
BASIC_407 = [("Proxy-Authenticate", 'Basic realm="CORP"'), ("Content-Type", "text/plain"), ("Content-Length", "9")]


def observe(status=407, credentials=None, method="GET", headers=BASIC_407, body=b"go away\n", keep=False, **kw):
    request = [("Proxy-Authorization", credentials)] if credentials else []
    return make_observation(
        method=method,
        url=kw.get("url", "http://example.com/x?secret=1"),
        host=kw.get("host", "example.com"),
        port=kw.get("port", 80),
        request_headers=request + kw.get("request_headers", []),
        status=status,
        reason=kw.get("reason", "Proxy Authentication Required"),
        response_headers=headers,
        body=body,
        closed=kw.get("closed", False),
        keep_usernames=keep,
    )


def infer(observations, **kw):
    return infer_scenario(observations, source="http://proxy:3128", captured_at="2026-01-02 03:04 UTC", **kw)


def test_read_challenge_rfc7616_example():
    c = read_challenge(RFC_DIGEST)
    assert c is not None and c.scheme == "Digest"
    assert list(c.params) == ["realm", "qop", "algorithm", "nonce", "opaque"]
    assert c.param("qop") == "auth, auth-int" and c.param("algorithm") == "SHA-256"
    assert read_challenge('Basic realm="a \\"q\\" b"') == Challenge("Basic", None, {"realm": 'a "q" b'})
    assert read_challenge("NTLM TlRMTVNTUAACAAAA==") == Challenge("NTLM", "TlRMTVNTUAACAAAA==", {})
    assert read_challenge("Negotiate") == Challenge("Negotiate", None, {})
    # not exactly one well-formed challenge: None, and capture keeps the value verbatim
    assert read_challenge('Basic realm="a\r\n b"') is None
    assert read_challenge('Basic realm="a", Digest realm="b"') is None


def test_generated_values_never_keep_a_nonce():
    assert generated_value(RFC_DIGEST, read_challenge(RFC_DIGEST)) == RFC_DIGEST.replace(
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "{nonce}"
    )
    ntlm = "NTLM TlRMTVNTUAACAAAA=="
    assert generated_value(ntlm, read_challenge(ntlm)) == "NTLM {nonce}"


def test_digest_challenges_stay_verbatim_and_the_digest_section_verifies():
    md5 = 'Digest realm="http-auth@example.org", qop="auth", algorithm=MD5, nonce="abc", stale=false'
    found = map_challenges([RFC_DIGEST, md5, 'Basic realm="http-auth@example.org"'], ("basic", "digest"))
    assert found.items == [
        {"value": RFC_DIGEST.replace("7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "{nonce}")},
        {"value": md5.replace("abc", "{nonce}")},
        "basic",
    ]
    assert found.names == ["digest", "basic"] and found.realms == ["http-auth@example.org"]
    assert found.sections["digest"] == {
        "charset": False,
        "userhash": False,
        "algorithms": ["SHA-256", "MD5"],
        "qop": ["auth", "auth-int"],
        "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    }
    verbatim = map_challenges([RFC_DIGEST], ("basic",))
    assert verbatim.items == [{"value": generated_value(RFC_DIGEST, read_challenge(RFC_DIGEST))}]
    assert verbatim.realms == []  # a verbatim challenge keeps its realm; the scenario's is from Basic


def test_a_basic_challenge_mitm407_would_not_send_is_kept_verbatim():
    found = map_challenges(["Basic realm=CORP", 'basic realm="x"', 'Basic realm="CORP", charset="UTF-8"'], ("basic",))
    assert found.items == [{"value": "Basic realm=CORP"}, {"value": 'basic realm="x"'}, "basic"]
    assert found.names == ["basic"] and found.realms == ["CORP", "x"]  # Basic still verifies credentials
    text = infer([observe(headers=[("Proxy-Authenticate", "Basic realm=CORP")])])
    doc = yaml.safe_load(text)
    assert doc["schemes"] == ["basic"] and doc["response"]["challenges"] == [{"value": "Basic realm=CORP"}]


def test_observation_drops_every_secret():
    echo = f"you sent {TOKEN} = alice:{PASSWORD} or {PASSWORD.replace(':', '%3A').replace('%', '%25')}".encode()
    o = observe(
        credentials=f"Basic {TOKEN}",
        body=echo,
        headers=[*BASIC_407, ("Set-Cookie", "sid=s3ss10n"), ("X-Echo", f"Basic {TOKEN}")],
        request_headers=[("Cookie", "sid=c00kie-value")],
    )
    text = repr(o)
    for secret in (TOKEN, PASSWORD, "alice", "s3ss10n", "Set-Cookie", "secret=1"):
        assert secret not in text
    assert o.credentials == "basic" and o.user is None
    assert ("X-Echo", REDACTED) in o.headers
    assert o.url == "http://example.com/x"  # queries may hold tokens
    assert observe(credentials=f"Basic {TOKEN}", keep=True).user == "alice"
    assert scrub("a=c00kie-value", ["c00kie-value"]) == f"a={REDACTED}"


def test_infer_basic_squid_like():
    headers = [
        ("Server", "squid/5.7"),
        ("Date", "Mon, 23 Nov 2026 12:26:20 GMT"),
        ("Content-Length", "3063"),
        ("Proxy-Authenticate", 'Basic realm="CORP"'),
        ("Proxy-Authenticate", "Negotiate"),
        ("Connection", "keep-alive"),
    ]
    body = b"<p>http://example.com/x at Mon, 23 Nov 2026 12:26:20 GMT via example.com:80</p>"
    plain = observe(headers=headers, body=body)
    connect = observe(method="CONNECT", url="example.com:443", port=443, headers=headers, body=b"tunnel", closed=True)
    wrong = observe(credentials=f"Basic {TOKEN}", status=403, reason="Forbidden", headers=[("Server", "squid/5.7")])
    ok = observe(status=200, credentials=f"Basic {TOKEN}", headers=[], keep=True)
    text = infer([plain, connect, wrong, observe(credentials=f"Basic {TOKEN}", status=403, headers=[]), ok])
    assert PASSWORD not in text and TOKEN not in text
    assert text.startswith("# captured: the authentication behaviour of the proxy at http://proxy:3128\n")
    doc = yaml.safe_load(text)
    assert doc["users"] == {"alice": "mitm407-replay"}  # kept by the one keep_usernames observation
    assert doc["realm"] == "CORP" and doc["schemes"] == ["basic", "negotiate"] and doc["basic"] == {"charset": False}
    response = doc["response"]
    assert response["challenges"] == ["basic", "negotiate"]
    assert response["headers"] == [
        {"Server": "squid/5.7"},
        {"Date": "{date}"},
        {"Content-Length": "{content_length}"},
        {"Proxy-Authenticate": "{challenges}"},
        {"Connection": "keep-alive"},
    ]
    assert response["body"] == "<p>{url} at {date} via {authority}</p>"
    assert response["connect"] == {"body": "tunnel", "close": True}
    assert response["bad_credentials"] == {
        "status": 403,
        "reason": "Forbidden",
        "challenges": [],
        "headers": [{"Server": "squid/5.7"}],
        "body": "go away\n",
    }
    parse_scenario(text, "g.yaml", Path("."), env={})


def test_lockout_and_bypass_are_noted():
    wrong = f"Basic {TOKEN}"
    observations = [
        observe(),
        observe(credentials=wrong),
        observe(credentials=wrong),
        observe(credentials=wrong, status=403, headers=[], body=b""),
        observe(status=200, host="intranet.corp", url="http://intranet.corp/", headers=[]),
        observe(method="CONNECT", status=200, url="a:443", host="a", port=443, headers=[]),
    ]
    text = infer(observations)
    assert "# Note: after 2 wrong attempts the proxy answered 403: a lockout (fault 'lockout')" in text
    doc = yaml.safe_load(text)
    assert doc["faults"] == [{"lockout": {"failures": 2, "status": 403}}]
    assert doc["response"]["denied"] == {"status": 403, "challenges": [], "headers": [], "body": ""}
    rules = doc["rules"]
    assert rules == [
        {"name": "connect-without-auth", "match": {"connect": True}, "auth": "none"},
        {"name": "passed-without-auth", "match": {"host": ["intranet.corp"], "connect": False}, "auth": "none"},
    ]


def test_lockout_without_a_usable_fault_is_a_note(monkeypatch):
    """Without a ``lockout`` fault, or one that rejects the settings, the capture still passes ``check``."""
    from dataclasses import replace

    from mitm407.faults.registry import FAULTS

    wrong = f"Basic {TOKEN}"
    observations = [observe(), observe(credentials=wrong), observe(credentials=wrong, status=403, headers=[])]
    lockout = FAULTS["lockout"]
    monkeypatch.delitem(FAULTS, "lockout")
    text = infer(observations)
    assert "faults" not in yaml.safe_load(text)
    assert "# Note: after 1 refused attempts with credentials the answer changed from 407 to 403" in text

    def rejecting(reader, node):
        reader.error(node, "lockout wants other settings")

    monkeypatch.setitem(FAULTS, "lockout", replace(lockout, parse=rejecting))
    text = infer(observations)
    assert "faults" not in yaml.safe_load(text)
    assert "# Note: this mitm407 could not express everything captured (lockout wants other settings)" in text


def test_unavailable_scheme_options_fall_back_to_verbatim():
    """A scheme this mitm407 cannot configure cannot fail ``check``: it is replayed verbatim."""
    headers = [("Proxy-Authenticate", "X-Corp"), ("Proxy-Authenticate", RFC_DIGEST)]
    text = infer([observe(headers=headers)], available=("basic", "digest", "x-corp"))
    assert "could not express everything captured (unknown value 'x-corp' for 'schemes' item)" in text
    response = yaml.safe_load(text)["response"]
    assert response["challenges"] == [
        {"value": "X-Corp"},
        {"value": generated_value(RFC_DIGEST, read_challenge(RFC_DIGEST))},
    ]
    assert "7ypf/xlj9XXwfDPEoM4URrv" not in text


def test_nothing_refused_is_an_error():
    with pytest.raises(CaptureError, match="no refusal"):
        infer([observe(status=200, headers=[])])


def test_body_template_placeholders():
    o = observe(body=b"GET http://example.com/x from example.com:80 (example.com) Tue, 14 Nov 2023 22:13:20 GMT")
    assert body_template(o) == "GET {url} from {authority} ({host}) {date}"


def test_har_entries():
    har = {
        "log": {
            "entries": [
                {
                    "request": {
                        "method": "GET",
                        "url": "http://example.com/h",
                        "headers": [{"name": "Proxy-Authorization", "value": f"Basic {TOKEN}"}],
                    },
                    "response": {
                        "status": 407,
                        "statusText": "Proxy Authentication Required",
                        "headers": [{"name": "Proxy-Authenticate", "value": 'Basic realm="H"'}],
                        "content": {"text": base64.b64encode(b"no").decode(), "encoding": "base64"},
                    },
                },
                {"request": {"method": "GET", "url": "https://example.com/in-tunnel"}, "response": {"status": 407}},
                {"request": {"method": "GET", "url": "http://example.com/x"}, "response": {"status": 0}},
            ]
        }
    }
    (o,) = observations_from_har(har, keep_usernames=False)
    assert (o.status, o.body, o.credentials, o.challenges()) == (407, "no", "basic", ['Basic realm="H"'])
    with pytest.raises(CaptureFileError):
        observations_from_har({"nope": 1}, keep_usernames=False)


def test_ntlm_and_negotiate_map_to_their_schemes():
    headers = [
        ("Proxy-Authenticate", "Negotiate"),
        ("Proxy-Authenticate", "NTLM"),
        ("Proxy-Authenticate", 'Basic realm="CORP"'),
    ]
    type2 = [("Proxy-Authenticate", "NTLM TlRMTVNTUAACAAAADAAMADAAAAA=")]  # a handshake leg: not a wrong password
    observations = [observe(headers=headers), observe(credentials="NTLM TlRMTVNTUAABAAAAB4IIog==", headers=type2)]
    text = infer(observations)
    doc = yaml.safe_load(text)
    assert doc["schemes"] == ["negotiate", "ntlm", "basic"]
    assert doc["response"]["challenges"] == ["negotiate", "ntlm", "basic"]
    assert "bad_credentials" not in doc["response"]
    assert "TlRMTVNTUAAC" not in text and "TlRMTVNTUAAB" not in text
