"""End to end: every fault with a real mitmdump, a real origin and a real client.

One proxy carries most faults as per-rule faults selected by path (plain HTTP)
or by host (CONNECT), so the module starts only two mitmdump processes. Each
test uses its own user, so per-user state (expiry, lockout) never crosses.
"""

from __future__ import annotations

import json
import re
import socket
import textwrap
import time
from pathlib import Path

import pytest
import requests

from procs import REPO, advance_clock, basic, curl, free_port, raw_exchange

pytestmark = pytest.mark.e2e

PROBE = str(REPO / "tests" / "fault_probe.py")
PROXYAUTH = str(REPO / "addons" / "proxyauth.py")
USERS = ["erin", "ada", "al", "bob", "rex", "dora", "del", "hop", "wes", "blo", "red", "mal", "cli", "dro"]

SCENARIO = textwrap.dedent(
    """\
    version: 1
    name: e2e-faults
    realm: "Fault Test"
    users:
    {users}
    rules:
      - {{match: {{path: /expire}}, auth: required, faults: [{{expire_after: {{requests: 2}}}}]}}
      - {{match: {{path: /always}}, auth: required, faults: [always_407]}}
      - {{match: {{path: /lockout}}, auth: required, faults: [{{lockout: {{failures: 2, seconds: 300, status: 403}}}}]}}
      - {{match: {{path: /reauth}}, auth: required, faults: [{{reauth_every: {{requests: 2}}}}]}}
      - {{match: {{path: /missing}}, auth: required, faults: [challenge_missing]}}
      - {{match: {{path: /malformed}}, auth: required, faults: [{{challenge_malformed: {{kind: unquoted_realm}}}}]}}
      - {{match: {{path: /unknown}}, auth: required, faults: [{{challenge_malformed: {{kind: unknown_first}}}}]}}
      - {{match: {{path: /close}}, auth: required, faults: [close_on_407]}}
      - {{match: {{connect: true, host: close.test}}, auth: required, faults: [close_on_407]}}
      - {{match: {{path: /drop-request}}, auth: required, faults: [{{drop: {{at: request}}}}]}}
      - {{match: {{path: /drop-response}}, auth: required, faults: [{{drop: {{at: response}}}}]}}
      - {{match: {{connect: true, host: tunnel-drop.test}}, auth: required, faults: [{{drop: {{at: after_connect}}}}]}}
      - {{match: {{path: /delay}}, auth: required, faults: [{{delay: {{ms: 400, on: challenge}}}}]}}
      - {{match: {{path: /slow-ok}}, auth: required, faults: [{{delay: {{ms: 300, on: success}}}}]}}
      - {{match: {{path: /connect-only}}, auth: required, faults: [connect_only]}}
      - {{match: {{path: /block}}, auth: required, faults: [block_page]}}
      - {{match: {{path: /redirect}}, auth: required, faults: [{{block_page: {{status: 302}}}}]}}
      - {{match: {{path: /wrong}}, auth: required, faults: [wrong_status]}}
      - {{match: {{path: /leak}}, auth: required, faults: [hop_by_hop]}}
    default: required
    """
).format(users="\n".join(f"  {u}: pw-{u}" for u in USERS))

ROTATE = textwrap.dedent(
    """\
    version: 1
    name: e2e-rotate
    realm: rotate
    users: {rita: unused}
    faults:
      - rotate: {user: rita, passwords: [first-pw, second-pw], requests: 2, cycle: false}
    """
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("faults")
    (base / "faults.yaml").write_text(SCENARIO, encoding="utf-8")
    (base / "rotate.yaml").write_text(ROTATE, encoding="utf-8")
    return base


@pytest.fixture(scope="module")
def proxy(module_mitmdump, files: Path):
    """The faults proxy, its control API on ``proxy.control_port`` (time-based faults advance its clock)."""
    port = free_port()
    dump = module_mitmdump(
        options={"scenario": str(files / "faults.yaml"), "control_port": str(port)},
        scripts=(PROXYAUTH, PROBE),
        env={"FAULT_PROBE": str(files / "probe.jsonl")},
    )
    dump.wait_for_log("control API on")
    dump.control_port = port
    return dump


@pytest.fixture(scope="module")
def rotate_proxy(module_mitmdump, files: Path):
    return module_mitmdump(options={"scenario": str(files / "rotate.yaml")})


def status(result) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1])


def get(proxy, origin, path: str, user: str | None = None, password: str | None = None, *extra: str):
    auth = ["--proxy-user", f"{user}:{password if password is not None else 'pw-' + user}"] if user else []
    return curl("-x", proxy.url, *auth, *extra, origin.url(path))


def probe(files: Path, path: str) -> list[dict]:
    """Probe records of requests to ``path`` (the probe writes after the answer: poll briefly)."""
    deadline = time.monotonic() + 5
    while True:
        lines = (files / "probe.jsonl").read_text().splitlines() if (files / "probe.jsonl").exists() else []
        records = [json.loads(line) for line in lines if json.loads(line)["path"] == path]
        if records or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def head_of(raw: bytes) -> tuple[str, list[tuple[str, str]]]:
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return head[0], [tuple(line.split(": ", 1)) for line in head[1:]]  # type: ignore[misc]


def test_expire_after_requests(proxy, origin, files):
    codes = [status(get(proxy, origin, "/expire", "erin")) for _ in range(4)]
    assert codes == [200, 200, 407, 407]
    log = proxy.wait_for_log("mitm407: fault expire_after: credentials of 'erin' expired after 2 requests")
    assert "-> 407: bad-credentials (credentials of 'erin' expired after 2 requests (fault expire_after))" in log
    assert log.count("mitm407: fault expire_after:") == 2  # once per refused request
    faults = [r["fault"] for r in probe(files, "/expire")]
    assert faults[:2] == [None, None]
    assert faults[2] == [{"name": "expire_after", "reason": "credentials of 'erin' expired after 2 requests"}]


def test_always_407_refuses_valid_credentials(proxy, origin):
    before = len(origin.seen)
    result = get(proxy, origin, "/always", "ada", None, "-D", "-")
    assert status(result) == 407
    assert 'Proxy-Authenticate: Basic realm="Fault Test", charset="UTF-8"' in result.stdout
    assert len(origin.seen) == before


def test_lockout_then_unlock(proxy, origin, files):
    assert status(get(proxy, origin, "/lockout", "bob", "wrong")) == 407
    assert status(get(proxy, origin, "/lockout", "bob", "wrong")) == 407  # second failure locks
    locked = get(proxy, origin, "/lockout", "bob", None, "-D", "-")  # right password, still locked
    assert status(locked) == 403
    assert re.search(r"user 'bob' is locked out for \d+ more seconds after 2 failed logins", locked.stdout)
    assert "Proxy-Authenticate" not in locked.stdout
    proxy.wait_for_log("mitm407: fault lockout: user 'bob' locked out for 300 s after 2 failed logins")
    advance_clock(proxy.control_port, 301)  # the window ends on the proxy's clock: no test sleeps 300 s
    assert status(get(proxy, origin, "/lockout", "bob")) == 200
    assert [r["status"] for r in probe(files, "/lockout")] == [407, 407, 403, 200]


def test_reauth_every_requests(proxy, origin):
    codes = [status(get(proxy, origin, "/reauth", "rex")) for _ in range(5)]
    assert codes == [200, 200, 407, 200, 200]
    proxy.wait_for_log("mitm407: fault reauth_every: re-authentication of user 'rex' required every 2 requests")
    assert "-> 407: stale (re-authentication of user 'rex'" in proxy.log


def test_challenge_missing_raw_and_curl(proxy, origin, files):
    target = origin.url("/missing")
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n\r\n".encode()
    (answer,) = raw_exchange(proxy.port, [request])
    line, headers = head_of(answer)
    assert line == "HTTP/1.1 407 Proxy Authentication Required"
    assert [k for k, _ in headers if k.lower() in ("proxy-authenticate", "www-authenticate")] == []
    # curl --proxy-anyauth waits for a challenge to pick a scheme: with none it gives up at the 407 ...
    anyauth = get(proxy, origin, "/missing", "dora", None, "--proxy-anyauth", "-v")
    assert status(anyauth) == 407
    assert anyauth.stderr.count("> GET http://") == 1  # it never retried with credentials
    # ... while preemptive Basic (curl's default with --proxy-user) never needs the challenge.
    assert status(get(proxy, origin, "/missing", "dora")) == 200
    first = probe(files, "/missing")[0]
    assert first["status"] == 407
    assert first["fault"] == [
        {"name": "challenge_missing", "reason": "407 sent without any challenge header (RFC 9110 §15.5.8)"}
    ]


def test_challenge_malformed_unquoted_realm(proxy, origin):
    result = curl("-x", proxy.url, "-D", "-", origin.url("/malformed"))
    assert status(result) == 407
    assert 'Proxy-Authenticate: Basic realm=Fault Test, charset="UTF-8"\n' in result.stdout


def test_unknown_scheme_first_curl_anyauth_picks_basic(proxy, origin):
    result = get(proxy, origin, "/unknown", "mal", None, "--proxy-anyauth", "-D", "-")
    assert 'Proxy-Authenticate: X-Corp-SSO realm="Fault Test"' in result.stdout
    assert status(result) == 200  # curl skipped the unknown scheme and answered Basic


def test_close_on_407_plain_http_raw_socket_sees_eof(proxy, origin):
    target = origin.url("/close")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    line, headers = head_of(data)
    assert line == "HTTP/1.1 407 Proxy Authentication Required"
    assert ("Connection", "close") in headers  # and the loop above ended on EOF


def test_close_on_407_connect(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"CONNECT close.test:443 HTTP/1.1\r\nHost: close.test:443\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    line, headers = head_of(data)
    assert line == "HTTP/1.1 407 Proxy Authentication Required"
    assert ("Connection", "close") in headers


def test_drop_request_curl_gets_empty_reply(proxy, origin, files):
    before = len(origin.seen)
    result = get(proxy, origin, "/drop-request", "dro")
    assert result.returncode == 52, result.stderr  # CURLE_GOT_NOTHING: "Empty reply from server"
    assert len(origin.seen) == before
    (record,) = probe(files, "/drop-request")
    assert record["fault"] == [{"name": "drop", "reason": "connection reset instead of any answer"}]


def test_drop_response_after_origin_answered(proxy, origin):
    before = len(origin.seen)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(
            f"GET {origin.url('/drop-response')} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n"
            f"Proxy-Authorization: {basic('dro', 'pw-dro')}\r\n\r\n".encode()
        )
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
    assert data == b""
    assert len(origin.seen) == before + 1 and origin.seen[-1].path == "/drop-response"


def test_drop_after_connect(proxy):
    # HTTP/1.1 inside the tunnel: over HTTP/2 mitmproxy resets only the stream (curl exit 92)
    result = curl("-x", proxy.url, "--proxy-user", "dro:pw-dro", "-k", "--http1.1", "https://tunnel-drop.test/")
    assert result.returncode == 52, result.stderr  # TLS tunnel opened, then "Empty reply from server"
    proxy.wait_for_log(
        "mitm407: fault drop: CONNECT accepted, connection reset at the first request inside the tunnel"
    )


def test_delay_on_challenge_and_success(proxy, origin):
    start = time.monotonic()
    assert status(get(proxy, origin, "/delay")) == 407
    assert time.monotonic() - start >= 0.4
    start = time.monotonic()
    assert status(get(proxy, origin, "/delay", "del")) == 200  # success is not delayed here
    start = time.monotonic()
    assert status(get(proxy, origin, "/slow-ok", "del")) == 200
    assert time.monotonic() - start >= 0.3


def test_connect_only(proxy, origin, tls_origin):
    assert status(get(proxy, origin, "/connect-only")) == 200  # plain HTTP: no credentials needed
    https = curl("-x", proxy.url, "-k", tls_origin.url("/connect-only"))
    assert https.returncode == 56 and "407" in https.stderr  # CONNECT is still challenged


def test_block_page_200_html(proxy, origin):
    r = requests.get(origin.url("/block"), proxies={"http": proxy.url}, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Proxy-Authenticate" not in r.headers
    assert "<title>Access to this site requires sign-in</title>" in r.text
    assert f"Requested: 127.0.0.1:{origin.port}/block</p>" in r.text, r.text


def test_block_page_escapes_the_url_with_the_shipped_scenario(module_mitmdump, origin):
    """The shipped ``web-filter-block-page``: a ``<script>`` in the URL comes back as text, not markup."""
    proxy = module_mitmdump(options={"scenario": "web-filter-block-page"})
    path = "/<script>alert(1)</script>?a=1&b=2"
    request = f"GET http://127.0.0.1:{origin.port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n\r\n"
    (raw,) = raw_exchange(proxy.port, [request.encode()])
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Type: text/html; charset=utf-8" in head, head
    expected = f"<p>Requested: 127.0.0.1:{origin.port}/&lt;script&gt;alert(1)&lt;/script&gt;?a=1&amp;b=2</p>"
    assert expected.encode() in body, body
    assert b"<script>" not in body


def test_block_page_redirect(proxy, origin):
    result = curl("-x", proxy.url, "-D", "-", origin.url("/redirect"))
    assert status(result) == 302
    assert "Location: http://login.proxy.invalid/\n" in result.stdout


def test_wrong_status_401_with_www_authenticate(proxy, origin):
    result = curl("-x", proxy.url, "-D", "-", origin.url("/wrong"))
    assert status(result) == 401
    assert result.stdout.startswith("HTTP/1.1 401 Unauthorized\n")
    assert 'WWW-Authenticate: Basic realm="Fault Test", charset="UTF-8"\n' in result.stdout
    assert "Proxy-Authenticate" not in result.stdout
    assert "401 Unauthorized\n\nmitm407 (mitm407) refused this request" in result.stdout


def test_hop_by_hop_leaks_proxy_authorization(proxy, origin):
    assert status(get(proxy, origin, "/leak", "hop")) == 200
    assert origin.seen[-1].path == "/leak"
    assert origin.seen[-1].headers["proxy-authorization"] == basic("hop", "pw-hop")
    proxy.wait_for_log("mitm407: fault hop_by_hop: Proxy-Authorization forwarded upstream")


def test_rotate_old_password_fails_new_works(rotate_proxy, origin):
    def code(password: str) -> int:
        return status(curl("-x", rotate_proxy.url, "--proxy-user", f"rita:{password}", origin.url("/rotate")))

    assert code("unused") == 407  # the rotation replaces the password from 'users:'
    assert [code("first-pw"), code("first-pw")] == [200, 200]
    assert code("first-pw") == 407
    assert code("second-pw") == 200
    log = rotate_proxy.wait_for_log("mitm407: fault rotate: password of 'rita' rotated: password 2 of 2")
    assert "first-pw" not in log and "second-pw" not in log
