"""End to end: uncached bcrypt checks do not block the proxy's other traffic.

A real mitmdump with a cost-12 bcrypt user (~200 ms per check, measured here
in the test process) and a cleartext user. While several distinct wrong
passwords for the bcrypt user are being checked, a request of the cleartext
user must be answered before any of them: on the event loop the first
bcrypt alone would hold it back. No absolute time limit is asserted, only
the order of completions.
"""

from __future__ import annotations

import socket
import textwrap
import threading
import time
from pathlib import Path

import bcrypt
import pytest

from hoplogcheck import wait_for_record
from procs import HOPLOG, PROXYAUTH, basic, curl, read_response, register_secret

pytestmark = pytest.mark.e2e

COST = 12
SLOW_PW, QUICK_PW = register_secret("slow", "bcrypt-slow-pw"), register_secret("quick", "quick-pw")
TUNNEL_PW = register_secret("tunnel", "bcrypt-tunnel-pw")
WRONG = [register_secret("slow", f"wrong-{i}") for i in range(6)]
SAME_WRONG = register_secret("slow", "same-wrong")
register_secret("slow", SAME_WRONG + "-not")
register_secret("tunnel", SAME_WRONG + "-tunnel")
STARTED = "slow password check started in a worker thread"


@pytest.fixture(scope="module")
def bcrypt_hash() -> str:
    return bcrypt.hashpw(SLOW_PW.encode(), bcrypt.gensalt(COST)).decode()


@pytest.fixture(scope="module")
def tunnel_hash() -> str:
    return bcrypt.hashpw(TUNNEL_PW.encode(), bcrypt.gensalt(COST)).decode()


@pytest.fixture(scope="module")
def bcrypt_seconds(bcrypt_hash: str) -> float:
    """One uncached check as the proxy will run it (the fastest of three: the least disturbed)."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        bcrypt.checkpw(b"not-it", bcrypt_hash.encode())
        timings.append(time.perf_counter() - started)
    return min(timings)


@pytest.fixture(scope="module")
def proxy(module_mitmdump, tmp_path_factory, logdir: Path, bcrypt_hash: str, tunnel_hash: str):
    directory = tmp_path_factory.mktemp("slowchecks")
    (directory / "users.htpasswd").write_text(f"slow:{bcrypt_hash}\ntunnel:{tunnel_hash}\n", encoding="utf-8")
    scenario = directory / "s.yaml"
    scenario.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            name: e2e-slowchecks
            realm: SLOW
            users: {{quick: "{QUICK_PW}"}}
            htpasswd: users.htpasswd
            schemes: [basic]
            """
        ),
        encoding="utf-8",
    )
    hoplog = logdir / "hops-slowchecks.jsonl"
    dump = module_mitmdump(
        options={"scenario": str(scenario), "hoplog": str(hoplog), "termlog_verbosity": "debug"},
        scripts=(PROXYAUTH, HOPLOG),
        name="slowchecks",
    )
    dump.hoplog = hoplog
    return dump


class Timed(threading.Thread):
    """One proxied GET on its own connection; ``status`` and ``done`` (perf_counter) when it ends."""

    def __init__(self, port: int, url: str, user: str, password: str) -> None:
        super().__init__(daemon=True)
        host = url.split("/")[2]
        self.request = (
            f"GET {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {basic(user, password)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        self.port = port
        self.status = 0
        self.done = 0.0

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall(self.request)
            response = read_response(s.makefile("rb"))
        self.status = int(response.split(b" ", 2)[1]) if response else -1
        self.done = time.perf_counter()


def fire(threads: list[Timed]) -> list[Timed]:
    for thread in threads:
        thread.start()
    return threads


def finish(threads: list[Timed]) -> None:
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_other_requests_are_answered_while_bcrypt_checks_run(proxy, origin, bcrypt_seconds):
    assert bcrypt_seconds > 0.05, "cost 12 should be clearly measurable"
    before = proxy.log.count(STARTED)
    slow = fire([Timed(proxy.port, origin.url(f"/slow{i}"), "slow", pw) for i, pw in enumerate(WRONG)])
    # Let the proxy start checking; on the event loop it would now be stuck in a bcrypt for
    # at least three quarters of a check.
    time.sleep(bcrypt_seconds / 4)
    quick = fire([Timed(proxy.port, origin.url("/quick"), "quick", QUICK_PW)])[0]
    finish([quick, *slow])
    assert quick.status == 200 and [t.status for t in slow] == [407] * len(WRONG)
    assert quick.done < min(t.done for t in slow), "the cleartext request waited for a bcrypt"
    proxy.wait_for_log(f"/slow{len(WRONG) - 1}")
    assert proxy.log.count(STARTED) - before == len(WRONG)  # one worker-thread check per distinct password


def test_one_bcrypt_for_the_same_credentials_sent_at_once(proxy, origin):
    before = proxy.log.count(STARTED)
    finish(fire([Timed(proxy.port, origin.url(f"/same{i}"), "slow", SAME_WRONG) for i in range(5)]))
    # every thread joined: its 407 was written after the check, so its log line is out too
    proxy.wait_for_log("/same4")
    assert proxy.log.count(STARTED) - before == 1


def test_answers_and_hop_log_of_the_bcrypt_path_are_unchanged(proxy, origin):
    right = fire([Timed(proxy.port, origin.url("/right"), "slow", SLOW_PW)])[0]
    wrong = fire([Timed(proxy.port, origin.url("/wrong"), "slow", SAME_WRONG + "-not")])[0]
    finish([right, wrong])
    assert (right.status, wrong.status) == (200, 407)
    seen = [s for s in origin.seen if s.path == "/right"]
    assert seen and "proxy-authorization" not in seen[-1].headers  # consumed, as on the sync path
    ok = wait_for_record(proxy.hoplog, lambda r: r["path"] == "/right")
    refused = wait_for_record(proxy.hoplog, lambda r: r["path"] == "/wrong")
    assert ok["status"] == 200 and ok["auth"]["result"] == "ok" and ok["auth"]["user"] == "slow"
    assert refused["status"] == 407 and refused["auth"]["result"] == "bad-credentials"
    assert refused["answered_by"]["kind"] == "this-proxy"
    assert "wrong password for user 'slow'" in proxy.wait_for_log("/wrong")
    # cached now: the same credentials again are answered the same, without another check
    before = proxy.log.count(STARTED)
    again = fire([Timed(proxy.port, origin.url("/right"), "slow", SLOW_PW)])[0]
    finish([again])
    wait_until(lambda: proxy.log.count(origin.url("/right")) >= 2)  # its log output is out
    assert again.status == 200 and proxy.log.count(STARTED) == before


def test_connect_with_bcrypt_credentials_checks_off_the_loop(proxy, tls_origin):
    """The CONNECT hook defers too: the tunnel is accepted (and its requests pass) or refused as before."""
    url = tls_origin.url("/tunnel")
    before = proxy.log.count(STARTED)
    good = curl("--cacert", proxy.ca_file, "-x", proxy.url, "--proxy-user", f"tunnel:{TUNNEL_PW}", url, url)
    assert good.returncode == 0 and good.stdout.endswith("200"), good.stderr
    assert [s.path for s in tls_origin.seen[-2:]] == ["/tunnel", "/tunnel"]
    assert all("proxy-authorization" not in s.headers for s in tls_origin.seen)
    refused = curl("--cacert", proxy.ca_file, "-x", proxy.url, "--proxy-user", f"tunnel:{SAME_WRONG}-tunnel", url)
    assert refused.returncode == 56 and "407" in refused.stderr
    wait_until(lambda: proxy.log.count(STARTED) - before == 2)  # one check per new credential, none inside
