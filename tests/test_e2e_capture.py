"""End to end: capture a real proxy (Squid, and mitm407 with a distinctive 407), replay it, compare.

The replay runs ``mitmdump -s addons/proxyauth.py`` with the captured scenario;
each answer is compared with the original's header by header (names, order,
values; Date and dates in the body masked; nonces masked), by body, by close
behaviour, and by what curl and urllib end with.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import squid as squid_helper
from mitm407.capture.probe import RawAnswer, connect_request, exchange
from procs import REPO, basic, curl, free_port, mitm407_cli, stop_process, wait_for_port

pytestmark = pytest.mark.e2e

SQUID_USER, SQUID_PW = "alice", "squid-Right-pw-7"
WRONG_PW = "definitely-Wrong-pw-9"
REPLAY_PW = "mitm407-replay"
DATE_RE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT")
NONCE_RE = re.compile(r'nonce="[^"]*"')


# -- processes -----------------------------------------------------------------


@contextlib.contextmanager
def running_squid(logdir: Path, digest: bool = False) -> Iterator[str]:
    """Squid 5 with Basic auth (tests/squid.py), Digest offered first if asked; its URL."""
    if not squid_helper.available():
        pytest.skip("squid is not installed (make test installs it)")
    proxy = squid_helper.start_squid(
        logdir / "squid-capture", {SQUID_USER: SQUID_PW}, "Squid Capture Test", "Squid Digest Test" if digest else None
    )
    try:
        yield proxy.url
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def squid(logdir: Path) -> Iterator[str]:
    with running_squid(logdir) as url:
        yield url


def start_capture(upstream: str, output: Path, requests: int, *mitmdump_args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "addons")}
    args = [sys.executable, "-m", "mitm407", "capture", "--upstream", upstream, "-p", str(port), "-o", str(output)]
    proc = subprocess.Popen(
        [*args, "--requests", str(requests), "--", *mitmdump_args],
        stdout=open(output.with_suffix(".log"), "wb"),  # noqa: SIM115 -- closed with the process
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    wait_for_port(port, proc)
    return proc, port


def finish_capture(proc: subprocess.Popen, output: Path) -> str:
    try:
        proc.wait(timeout=30)
    finally:
        stop_process(proc)
    log = output.with_suffix(".log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    return output.read_text(encoding="utf-8")


# -- comparing -----------------------------------------------------------------


def ask(url: str, request: bytes) -> RawAnswer:
    host, port = url.rsplit("/", 1)[-1].split(":")
    answer, _, writer = asyncio.run(_ask(host, int(port), request))
    return answer


async def _ask(host: str, port: int, request: bytes):
    answer, reader, writer = await exchange(host, port, request, linger=0.5)
    writer.close()
    return answer, reader, writer


def plain_get(target: str, authorization: str | None = None) -> bytes:
    host = target.split("/")[2]
    extra = f"Proxy-Authorization: {authorization}\r\n" if authorization else ""
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def masked(answer: RawAnswer) -> tuple:
    """What must be equal between original and replay: everything but dates and nonces."""
    headers = [(k, NONCE_RE.sub('nonce="N"', DATE_RE.sub("DATE", v))) for k, v in answer.headers]
    body = DATE_RE.sub("DATE", answer.body.decode("utf-8", "replace"))
    return answer.status, answer.reason, headers, body, answer.closed


def assert_same_answer(original: RawAnswer, replay: RawAnswer) -> None:
    a, b = masked(original), masked(replay)
    assert a[:2] == b[:2]
    assert [k for k, _ in a[2]] == [k for k, _ in b[2]]  # names and order
    assert a[2] == b[2]  # values (dates, nonces masked)
    assert a[3] == b[3]  # body
    assert a[4] == b[4]  # connection closed after the answer or not


def assert_replay_answers_alike(original: str, replay: str, requests: tuple[bytes, ...]) -> None:
    for request in requests:
        assert_same_answer(ask(original, request), ask(replay, request))


def curl_result(proxy: str, url: str, *args: str, auth: str = "--proxy-anyauth") -> tuple[int, str]:
    result = curl(auth, "-x", proxy, *args, url)
    return result.returncode, result.stdout.rsplit("\n", 1)[-1]


def urllib_result(proxy: str, url: str, realm: str, user: str, password: str) -> int:
    handler = urllib.request.ProxyBasicAuthHandler()
    handler.add_password(realm, proxy, user, password)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}), handler)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def assert_no_secret(text: str, *secrets: str) -> None:
    import base64

    for secret in secrets:
        assert secret not in text
        for user in (SQUID_USER, "carol", "user"):
            assert base64.b64encode(f"{user}:{secret}".encode()).decode() not in text


# -- Squid ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def squid_capture(squid, origin, tls_origin, confdir, tmp_path_factory) -> tuple[Path, str]:
    """Capture Squid while curl sends no, wrong and right credentials, over plain HTTP and CONNECT."""
    output = tmp_path_factory.mktemp("capture") / "squid.yaml"
    insecure = ("--set", "ssl_insecure=true", "--set", f"confdir={confdir}")  # mitmdump arguments after --
    proc, port = start_capture(squid, output, 8, *insecure)  # 8 answers: --proxy-anyauth asks twice
    proxy = f"http://127.0.0.1:{port}"
    assert curl_result(proxy, origin.url("/c1")) == (0, "407")
    assert curl_result(proxy, origin.url("/c2"), "--proxy-user", f"{SQUID_USER}:{WRONG_PW}") == (0, "407")
    assert curl_result(proxy, origin.url("/c3"), "--proxy-user", f"{SQUID_USER}:{SQUID_PW}") == (0, "200")
    assert origin.seen[-1].path == "/c3"
    connect = curl("-k", "-x", proxy, "https://127.0.0.1:9/")
    # the client sees Squid's real 407 on CONNECT, not mitmproxy's 502
    assert connect.returncode == 56 and "response 407" in connect.stderr
    curl("-k", "-x", proxy, "--proxy-user", f"{SQUID_USER}:{WRONG_PW}", "https://127.0.0.1:9/")
    # right credentials on CONNECT: the capture repeats them on its own CONNECT upstream
    tunnel = curl(
        "--cacert",
        str(confdir / "mitmproxy-ca-cert.pem"),
        "-x",
        proxy,
        "--proxy-user",
        f"{SQUID_USER}:{SQUID_PW}",
        tls_origin.url("/t"),
    )
    assert tunnel.stdout.endswith("200"), tunnel.stderr
    assert tls_origin.seen[-1].path == "/t" and "proxy-authorization" not in tls_origin.seen[-1].headers
    return output, finish_capture(proc, output)


def test_squid_capture_is_a_valid_secret_free_scenario(squid_capture, squid):
    path, text = squid_capture
    check = mitm407_cli("check", str(path))
    assert check.returncode == 0, check.stderr
    assert text.startswith(f"# captured: the authentication behaviour of the proxy at {squid}\n")
    doc = yaml.safe_load(text)
    assert doc["realm"] == "Squid Capture Test"
    assert doc["schemes"] == ["basic"] and doc["basic"] == {"charset": False}
    assert doc["users"] == {"user": REPLAY_PW}  # no --keep-usernames: the name is not kept
    assert SQUID_USER not in text
    assert_no_secret(text, SQUID_PW, WRONG_PW)
    response = doc["response"]
    assert response["challenges"] == ["basic"]
    assert [next(iter(h)) for h in response["headers"]][:3] == ["Server", "Mime-Version", "Date"]
    assert {"Proxy-Authenticate": "{challenges}"} in response["headers"]
    assert "{url}" in response["body"] and "{date}" in response["body"]
    assert "bad_credentials" not in response  # Squid repeats the same 407


def test_squid_replay_answers_like_squid(squid_capture, squid, mitmdump_factory, origin):
    replay = mitmdump_factory(options={"scenario": str(squid_capture[0])})
    target = origin.url("/same")
    wrong_basic = basic(SQUID_USER, WRONG_PW)
    # (Squid writes https://HOST/* for CONNECT to 443 but HOST:PORT for others: the
    # template is learned from the CONNECT seen, to port 9, so compare like with like)
    requests = (
        plain_get(target),
        plain_get(target, wrong_basic),
        connect_request(f"127.0.0.1:{origin.port}", []),
        connect_request("127.0.0.1:8443", [("Proxy-Authorization", wrong_basic)]),
    )
    assert_replay_answers_alike(squid, replay.url, requests)
    # clients end the same way against both
    assert curl_result(squid, target) == curl_result(replay.url, target) == (0, "407")
    wrong = ("--proxy-user", f"{SQUID_USER}:{WRONG_PW}")
    assert curl_result(squid, target, *wrong) == curl_result(replay.url, target, *wrong) == (0, "407")
    right = curl_result(squid, target, "--proxy-user", f"{SQUID_USER}:{SQUID_PW}")
    assert right == curl_result(replay.url, target, "--proxy-user", f"user:{REPLAY_PW}") == (0, "200")
    realm = "Squid Capture Test"
    assert urllib_result(squid, target, realm, SQUID_USER, SQUID_PW) == 200
    assert urllib_result(replay.url, target, realm, "user", REPLAY_PW) == 200
    assert urllib_result(squid, target, realm, SQUID_USER, WRONG_PW) == 407
    assert urllib_result(replay.url, target, realm, "user", WRONG_PW) == 407


def test_capture_from_saved_flows_and_har(squid, origin, mitmdump_factory, tmp_path, squid_capture):
    """mitmproxy's own recordings (-w and hardump) give the same plain-HTTP shape as a live capture."""
    flows, har = tmp_path / "flows.mitm", tmp_path / "traffic.har"
    recorder = mitmdump_factory(
        scripts=(), extra=["--mode", f"upstream:{squid}", "-w", str(flows)], options={"hardump": str(har)}
    )
    assert curl_result(recorder.url, origin.url("/r1")) == (0, "407")
    assert curl_result(recorder.url, origin.url("/r2"), "--proxy-user", f"{SQUID_USER}:{WRONG_PW}") == (0, "407")
    assert curl_result(recorder.url, origin.url("/r3"), "--proxy-user", f"{SQUID_USER}:{SQUID_PW}") == (0, "200")
    recorder.stop()
    live = yaml.safe_load(squid_capture[1])["response"]
    for source in (flows, har):
        output = tmp_path / f"{source.suffix[1:]}.yaml"
        result = mitm407_cli("capture", "--from", str(source), "-o", str(output))
        assert result.returncode == 0, result.stderr
        text = output.read_text()
        assert_no_secret(text, WRONG_PW, SQUID_PW)
        assert SQUID_USER not in text
        response = yaml.safe_load(text)["response"]
        assert response["challenges"] == live["challenges"]
        assert response["body"] == live["body"]
        names = [next(iter(h)) for h in response["headers"]]
        assert names == [next(iter(h)) for h in live["headers"]]
    kept = tmp_path / "kept.yaml"
    assert mitm407_cli("capture", "--from", str(flows), "-o", str(kept), "--keep-usernames").returncode == 0
    text = kept.read_text()
    assert yaml.safe_load(text)["users"] == {SQUID_USER: REPLAY_PW}  # the name that passed; never a password
    assert_no_secret(text, WRONG_PW, SQUID_PW)


# -- mitm407 with a distinctive shape ---------------------------------------------

DISTINCTIVE = textwrap.dedent(
    """\
    version: 1
    name: distinctive
    realm: Corp SSO
    users:
      carol: "carol-Secret-42"
    schemes: [basic]
    basic: {charset: false}
    response:
      status: 407
      reason: Authentication Needed
      challenges:
        - {value: 'X-Corp-Token realm="corp", nonce="{nonce}", version=2'}
        - basic
      headers:
        - Server: CorpGate/2.1
        - X-Corp-Trace: gate-7
        - Proxy-Authenticate: "{challenges}"
        - Content-Type: text/html; charset=utf-8
        - Content-Length: "{content_length}"
        - Proxy-Status: corpgate; error=http_request_denied
      body: |
        <html><body><h1>Login required</h1><p>{method} {url} at {date}</p></body></html>
      close: true
      bad_credentials:
        status: 403
        reason: Forbidden
        challenges: []
        body: |
          <html><body><h1>Blocked</h1><p>{url}</p></body></html>
        close: false
    """
)


@pytest.fixture(scope="module")
def distinctive(module_mitmdump, tmp_path_factory):
    path = tmp_path_factory.mktemp("distinctive") / "distinctive.yaml"
    path.write_text(DISTINCTIVE)
    return module_mitmdump(options={"scenario": str(path)})


@pytest.fixture(scope="module")
def distinctive_capture(distinctive, origin, tmp_path_factory) -> tuple[Path, str]:
    output = tmp_path_factory.mktemp("capture") / "distinctive.yaml"
    proc, port = start_capture(distinctive.url, output, requests=6)
    proxy = f"http://127.0.0.1:{port}"
    assert curl_result(proxy, origin.url("/d1")) == (0, "407")
    assert curl_result(proxy, origin.url("/d2"), "--proxy-user", "carol:nope-nope") == (0, "403")
    assert curl_result(proxy, origin.url("/d3"), "--proxy-user", "carol:carol-Secret-42") == (0, "200")
    curl("-k", "-x", proxy, "https://127.0.0.1:9/")
    return output, finish_capture(proc, output)


def test_distinctive_capture_records_the_shape(distinctive_capture):
    _, text = distinctive_capture
    assert_no_secret(text, "carol-Secret-42", "nope-nope")
    assert "carol" not in text
    response = yaml.safe_load(text)["response"]
    assert response["reason"] == "Authentication Needed"
    assert response["challenges"] == [{"value": 'X-Corp-Token realm="corp", nonce="{nonce}", version=2'}, "basic"]
    assert response["close"] is True
    assert response["body"] == "<html><body><h1>Login required</h1><p>GET {url} at {date}</p></body></html>\n"
    bad = response["bad_credentials"]
    assert (bad["status"], bad["reason"], bad["challenges"], bad["close"]) == (403, "Forbidden", [], False)


def test_distinctive_replay_answers_like_the_original(distinctive_capture, distinctive, mitmdump_factory, origin):
    replay = mitmdump_factory(options={"scenario": str(distinctive_capture[0])})
    target = origin.url("/same")
    requests = (
        plain_get(target),
        plain_get(target, basic("carol", "wrong-pw")),
        connect_request("example.com:443", []),
        connect_request("example.com:443", [("Proxy-Authorization", basic("carol", "wrong-pw"))]),
    )
    assert_replay_answers_alike(distinctive.url, replay.url, requests)
    first, second = ask(replay.url, plain_get(target)), ask(replay.url, plain_get(target))
    assert first.headers[2] != second.headers[2]  # the verbatim challenge's nonce is fresh each time
    assert curl_result(distinctive.url, target) == curl_result(replay.url, target) == (0, "407")
    wrong = ("--proxy-user", "carol:wrong-pw")
    assert curl_result(distinctive.url, target, *wrong) == curl_result(replay.url, target, *wrong) == (0, "403")
    assert curl_result(distinctive.url, target, "--proxy-user", "carol:carol-Secret-42") == (0, "200")
    assert curl_result(replay.url, target, "--proxy-user", f"user:{REPLAY_PW}") == (0, "200")
    assert urllib_result(distinctive.url, target, "Corp SSO", "carol", "carol-Secret-42") == 200
    assert urllib_result(replay.url, target, "Corp SSO", "user", REPLAY_PW) == 200
    assert urllib_result(distinctive.url, target, "Corp SSO", "carol", "wrong-pw") == 403
    assert urllib_result(replay.url, target, "Corp SSO", "user", "wrong-pw") == 403


# -- Squid with Digest and Basic ------------------------------------------------------


@pytest.fixture(scope="module")
def squid_digest(logdir: Path) -> Iterator[str]:
    with running_squid(logdir, digest=True) as url:
        yield url


@pytest.fixture(scope="module")
def squid_digest_capture(squid_digest, origin, tmp_path_factory) -> tuple[Path, str]:
    output = tmp_path_factory.mktemp("capture") / "squid-digest.yaml"
    proc, port = start_capture(squid_digest, output, requests=3)
    proxy = f"http://127.0.0.1:{port}"
    assert curl_result(proxy, origin.url("/g1")) == (0, "407")
    assert curl_result(proxy, origin.url("/g2"), "--proxy-user", f"{SQUID_USER}:{SQUID_PW}") == (0, "200")
    return output, finish_capture(proc, output)


def test_squid_digest_capture_never_keeps_a_nonce(squid_digest_capture):
    _, text = squid_digest_capture
    assert_no_secret(text, SQUID_PW)
    assert SQUID_USER not in text
    assert "cnonce" not in text and "response=" not in text
    doc = yaml.safe_load(text)
    # the Digest scheme verifies; both challenges are replayed byte for byte, the nonce the scheme's own
    assert doc["realm"] == "Squid Digest Test" and doc["schemes"] == ["digest", "basic"]
    assert doc["digest"] == {"charset": False, "userhash": False, "algorithms": ["MD5"], "qop": ["auth"]}
    assert doc["response"]["challenges"] == [
        {"value": 'Digest realm="Squid Digest Test", nonce="{nonce}", qop="auth", stale=false'},
        {"value": 'Basic realm="Squid Capture Test"'},
    ]


def test_squid_digest_replay_answers_like_squid(squid_digest_capture, squid_digest, mitmdump_factory, origin):
    replay = mitmdump_factory(options={"scenario": str(squid_digest_capture[0])})
    target = origin.url("/same")
    requests = (plain_get(target), connect_request(f"127.0.0.1:{origin.port}", []))
    assert_replay_answers_alike(squid_digest, replay.url, requests)
    only_basic = {"auth": "--proxy-basic"}
    assert curl_result(squid_digest, target, "--proxy-user", f"{SQUID_USER}:{SQUID_PW}", **only_basic) == (0, "200")
    assert curl_result(replay.url, target, "--proxy-user", f"user:{REPLAY_PW}", **only_basic) == (0, "200")
    assert curl_result(squid_digest, target, "--proxy-user", f"{SQUID_USER}:{WRONG_PW}", **only_basic) == (0, "407")
    assert curl_result(replay.url, target, "--proxy-user", f"user:{WRONG_PW}", **only_basic) == (0, "407")
    realm = "Squid Capture Test"  # urllib answers the Basic challenge of the two
    assert urllib_result(squid_digest, target, realm, SQUID_USER, SQUID_PW) == 200
    assert urllib_result(replay.url, target, realm, "user", REPLAY_PW) == 200
    assert urllib_result(squid_digest, target, realm, SQUID_USER, WRONG_PW) == 407
    assert urllib_result(replay.url, target, realm, "user", WRONG_PW) == 407


def test_squid_digest_anyauth_client_ends_the_same(squid_digest_capture, squid_digest, mitmdump_factory, origin):
    path, _ = squid_digest_capture
    replay = mitmdump_factory(options={"scenario": str(path)})
    target = origin.url("/same")
    assert curl_result(squid_digest, target, "--proxy-user", f"{SQUID_USER}:{SQUID_PW}") == (0, "200")
    assert curl_result(replay.url, target, "--proxy-user", f"user:{REPLAY_PW}") == (0, "200")
    wrong = [
        curl_result(url, target, "--proxy-user", f"{user}:{WRONG_PW}")
        for url, user in ((squid_digest, SQUID_USER), (replay.url, "user"))
    ]
    assert wrong == [(0, "407"), (0, "407")]


def test_shipped_squid_basic_scenario_has_squids_shape(squid, mitmdump_factory, origin):
    """scenarios/squid-basic.yaml (a capture, host renamed) answers with Squid's header names and order."""
    replay = mitmdump_factory(options={"scenario": "squid-basic"})
    target = origin.url("/shipped")
    ours, real = ask(replay.url, plain_get(target)), ask(squid, plain_get(target))
    assert [k for k, _ in ours.headers] == [k for k, _ in real.headers]
    assert ("Proxy-Authenticate", 'Basic realm="CORP"') in ours.headers
    assert f'<a href="{target}">{target}</a>' in ours.body.decode() and not ours.closed
    tunnel = ask(replay.url, connect_request("example.com:443", []))
    assert b'<a href="https://example.com/*">https://example.com/*</a>' in tunnel.body
    assert curl_result(replay.url, target, "--proxy-user", f"user:{REPLAY_PW}") == (0, "200")


# -- mitm407 running a fault scenario (issue 7's account-lockout) --------------------------


def test_capture_of_a_lockout_replays_the_lockout(mitmdump_factory, origin, tmp_path):
    """Three wrong passwords, then 403: captured as the 'lockout' fault and a 'denied:' shape."""
    original = mitmdump_factory(options={"scenario": "account-lockout"})
    output = tmp_path / "lockout.yaml"
    proc, port = start_capture(original.url, output, 5)
    proxy = f"http://127.0.0.1:{port}"
    assert curl_result(proxy, origin.url("/l0"), auth="--proxy-basic") == (0, "407")
    wrong = [
        curl_result(proxy, origin.url("/l"), "--proxy-user", "carol:nope-nope", auth="--proxy-basic") for _ in range(4)
    ]
    assert [status for _, status in wrong] == ["407", "407", "407", "403"]
    text = finish_capture(proc, output)
    assert_no_secret(text, "nope-nope", "correct-horse")
    assert "carol" not in text
    doc = yaml.safe_load(text)
    assert doc["faults"] == [{"lockout": {"failures": 3, "status": 403}}]
    assert doc["response"]["denied"]["status"] == 403 and doc["response"]["denied"]["challenges"] == []
    # a fresh original (carol is locked in the first one) and the replay lock out alike
    fresh = mitmdump_factory(options={"scenario": "account-lockout"})
    replay = mitmdump_factory(options={"scenario": str(output)})
    for proxy_url, user in ((fresh.url, "carol"), (replay.url, "user")):
        statuses = [
            curl_result(proxy_url, origin.url("/x"), "--proxy-user", f"{user}:bad", auth="--proxy-basic")[1]
            for _ in range(4)
        ]
        assert statuses == ["407", "407", "407", "403"], proxy_url
    locked = plain_get(origin.url("/x"), basic("carol", "correct-horse"))
    a, b = ask(fresh.url, locked), ask(replay.url, plain_get(origin.url("/x"), basic("user", REPLAY_PW)))
    assert (a.status, a.reason, [k for k, _ in a.headers]) == (b.status, b.reason, [k for k, _ in b.headers])


def test_faults_apply_on_top_of_a_shape(mitmdump_factory, origin, tmp_path):
    """close_on_407 on a shape whose headers say keep-alive: one Connection: close, and the socket closes."""
    path = tmp_path / "shaped-close.yaml"
    path.write_text(
        "version: 1\nusers: {u: p}\nfaults: [close_on_407]\nresponse:\n"
        "  headers:\n    - Server: gate\n    - Connection: keep-alive\n  body: 'no {url}'\n"
    )
    dump = mitmdump_factory(options={"scenario": str(path)})
    answer = ask(dump.url, plain_get(origin.url("/f")))
    assert answer.headers == (
        ("Proxy-Authenticate", 'Basic realm="mitm407", charset="UTF-8"'),
        ("Server", "gate"),
        ("Connection", "close"),
        ("content-length", str(len(f"no {origin.url('/f')}"))),
    )
    assert answer.closed
