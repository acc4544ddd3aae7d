"""Soak test (``make soak``): concurrent mixed clients against two mitmdumps for ``SOAK_S`` seconds.

Two proxies, because Digest and NTLM need every user's cleartext password and the scenario refuses
to offer them beside a bcrypt-only htpasswd user:

- ``basic``: Basic with an inline and a bcrypt user. Clients send good, wrong, unknown-user and
  missing credentials, bypassed and denied paths, faults (``delay``, ``close_on_407``), and CONNECT
  tunnels (good and bad credentials) to a local TLS origin.
- ``digest-ntlm``: Digest (SHA-256 and MD5, ``qop=auth``, a short ``nonce_ttl``) and NTLM. Digest
  clients keep one connection and one nonce, counting ``nc`` up request after request and moving to
  the ``nextnonce`` of ``Proxy-Authentication-Info`` before the nonce expires; they also replay an
  ``nc`` (407), send a wrong password (407) and an expired nonce (407 with ``stale=true``). NTLM
  clients run the handshake on a new connection (type 1: 407, type 3: 200, then a request without
  credentials on the authenticated connection: 200), and with a wrong password (407, 407).

Each request has a unique path ``/soak/<kind>/<client>-<n>``. Afterwards it asserts, per proxy:

- every request got the status its kind must get (no 500, no stall, no dropped connection);
- no secret (password, base64 token, NTLM token, Digest response) appears in the proxy logs, the
  hop logs, or this output, and the origin never received a ``Proxy-Authorization`` header;
- no traceback in the proxy log;
- the proxy's RSS grew less than 10 % between the end of the warm-up and the end;
- when the hop log exists (``addons/mitm407/hoplog.py``, issue 4): every request's unique path
  appears in exactly one hop-log line, and there is one more line per CONNECT. Without it that check
  is skipped and says so.

Environment: ``SOAK_S`` (default 60), ``SOAK_CLIENTS`` (clients per proxy, default 4),
``SOAK_WARMUP_S`` (default: a quarter of ``SOAK_S``).
"""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import os
import re
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import measure  # puts addons/ and tests/ on sys.path: keep it first
import perconn

import digestclient
from ntlmclient import RawClient, handshake
from procs import Mitmdump, Origin, basic, make_tls_context, start_mitmdump

GOOD_PW, BCRYPT_PW, DIGEST_NTLM_PW = "soak-secret-3b9d1e", "soak-bcrypt-77aa0c", "soak-dn-5c21f0"
SECRETS = (GOOD_PW, BCRYPT_PW, DIGEST_NTLM_PW)
DIGEST_NTLM_USER = "carol"
NONCE_TTL_S = 4  # short, so that nonces expire (stale) and are replaced (nextnonce) within a short soak
HOPLOG_MODULE = measure.REPO / "addons" / "mitm407" / "hoplog.py"
RSS_GROWTH_LIMIT = 0.10
NTLM_TOKEN = "TlRMTVNTUA"  # base64 of "NTLMSSP": an NTLM message in a log

SCENARIO = f"""\
version: 1
name: soak
users: {{alice: "{GOOD_PW}"}}
htpasswd: soak.htpasswd
rules:
  - match: {{path: /soak/public}}
    auth: none
  - match: {{path: /soak/forbidden}}
    auth: deny
  - match: {{path: /soak/slow}}
    auth: required
    faults: [{{delay: {{ms: 20}}}}]
  - match: {{path: /soak/closing}}
    auth: required
    faults: [close_on_407]
"""

SCENARIO_DIGEST_NTLM = f"""\
version: 1
name: soak-digest-ntlm
users: {{{DIGEST_NTLM_USER}: "{DIGEST_NTLM_PW}"}}
schemes: [digest, ntlm]
digest: {{algorithms: [SHA-256, MD5], qop: [auth], nonce_ttl: {NONCE_TTL_S}}}
"""


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: collections.Counter = field(default_factory=collections.Counter)
    unexpected: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # unique paths the proxy must have logged
    connects: int = 0  # CONNECT requests: one hop-log line each, besides the requests inside
    digest_responses: set[str] = field(default_factory=set)  # every Digest response sent: none may be logged

    def record(self, kind: str, status: int, expected: int, request_id: str | None) -> None:
        with self.lock:
            self.counts[(kind, status)] += 1
            if status != expected:
                self.unexpected.append(f"{kind}: {status} (expected {expected})")
            if request_id is not None:
                self.ids.append(request_id)

    def problem(self, text: str) -> None:
        """Something wrong besides a status (a 407 without stale=true, no nextnonce)."""
        with self.lock:
            self.unexpected.append(text)


class Client(threading.Thread):
    """One client: a keep-alive proxy connection for plain HTTP, new tunnels for CONNECT."""

    def __init__(self, number: int, proxy_port: int, origin: Origin, tls_origin: Origin, tally: Tally, end: float):
        super().__init__(daemon=True)
        self.number, self.proxy_port, self.origin, self.tls_origin = number, proxy_port, origin, tls_origin
        self.tally, self.end = tally, end
        self.counter = itertools.count()
        self.conn: http.client.HTTPConnection | None = None
        self.tls = ssl.create_default_context()
        self.tls.check_hostname, self.tls.verify_mode = False, ssl.CERT_NONE  # mitmproxy's CA: not under test

    def next_id(self) -> str:
        return f"{self.number}-{next(self.counter)}"

    def plain(self, kind: str, credentials: str | Callable[[str], str] | None, path: str,
              expected: int) -> http.client.HTTPResponse | None:
        """One GET on the client's kept-alive connection; ``credentials`` may be computed from the URL
        (Digest hashes it). The response (its body read), or None when the connection failed."""
        request_id = self.next_id()
        url = f"http://127.0.0.1:{self.origin.port}{path}/{request_id}"
        value = credentials(url) if callable(credentials) else credentials
        headers = {"Proxy-Authorization": value} if value else {}
        response = None
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=15)
            self.conn.request("GET", url, headers=headers)
            response = self.conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):  # a dropped or stalled connection: status 0
            status, response = 0, None
            self.conn = None
        self.tally.record(kind, status, expected, request_id)
        return response

    def tunnel(self, kind: str, credentials: str | None, expected: int) -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", self.proxy_port, timeout=15, context=self.tls)
        conn.set_tunnel(f"127.0.0.1:{self.tls_origin.port}", headers={"Proxy-Authorization": credentials or ""})
        request_id = self.next_id()
        with self.tally.lock:
            self.tally.connects += 1
        try:
            conn.request("GET", f"/soak/tls/{request_id}")
            response = conn.getresponse()
            response.read()
            status = response.status
            conn.request("GET", f"/soak/tls/{request_id}-again")  # a second request inside the tunnel
            again = conn.getresponse()
            again.read()
            self.tally.record(kind + " (2nd in tunnel)", again.status, 200, f"{request_id}-again")
        except OSError as e:  # http.client raises on a non-200 CONNECT answer
            match = re.search(r"Tunnel connection failed: (\d+)", str(e))
            status = int(match.group(1)) if match else 0
            request_id = None  # the request never left the client
        finally:
            conn.close()
        self.tally.record(kind, status, expected, request_id)

    def steps(self) -> list[Callable[[], object]]:
        good, bcrypt_good = basic("alice", GOOD_PW), basic("bob", BCRYPT_PW)
        return [
            lambda: self.plain("good", good, "/soak/private", 200),
            lambda: self.plain("good bcrypt", bcrypt_good, "/soak/private", 200),
            lambda: self.plain("wrong password", basic("alice", "nope"), "/soak/private", 407),
            lambda: self.plain("unknown user", basic("mallory", GOOD_PW), "/soak/private", 407),
            lambda: self.plain("missing", None, "/soak/private", 407),
            lambda: self.plain("malformed", "Basic !!!", "/soak/private", 407),
            lambda: self.plain("bypass", None, "/soak/public", 200),
            lambda: self.plain("deny", good, "/soak/forbidden", 403),
            lambda: self.plain("fault delay", good, "/soak/slow", 200),
            lambda: self.plain("fault close_on_407", None, "/soak/closing", 407),
            lambda: self.plain("after a closed 407", good, "/soak/private", 200),
            lambda: self.tunnel("CONNECT good", good, 200),
            lambda: self.tunnel("CONNECT wrong", basic("alice", "nope"), 407),
        ]

    def run(self) -> None:
        for step in itertools.cycle(self.steps()):
            if time.monotonic() >= self.end:
                break
            step()
        if self.conn is not None:
            self.conn.close()


class DigestNtlmClient(Client):
    """Digest on one kept-alive connection (nonce counts, nextnonce, replay, stale); NTLM on new ones."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.algorithm = ("SHA-256", "MD5")[self.number % 2]
        self.realm = ""
        self.nonce: str | None = None  # the nonce in use, when it was issued, the last nc the proxy accepted
        self.issued = 0.0
        self.nc = 0
        self.first: tuple[str, float] | None = None  # the first nonce: it expires during the soak (stale)

    def steps(self) -> list[Callable[[], object]]:
        def good() -> object:
            return self.digest("digest good", DIGEST_NTLM_PW, self.nc + 1, 200)

        return [
            self.digest_challenge,
            good, good, good,  # nc 1, 2, 3, ... on one nonce
            lambda: self.nc and self.digest("digest replayed nc", DIGEST_NTLM_PW, self.nc, 407),
            lambda: self.digest("digest wrong password", "nope", self.nc + 1, 407),
            self.digest_stale,
            lambda: self.ntlm("ntlm", DIGEST_NTLM_PW, 200),
            lambda: self.ntlm("ntlm wrong password", "nope", 407),
        ]

    def digest_challenge(self) -> None:
        """No credentials: a 407 offering Digest; its nonce is the client's first one."""
        response = self.plain("digest missing", None, "/soak/digest", 407)
        if response is None or self.nonce is not None:
            return
        challenges = [v for v in response.headers.get_all("Proxy-Authenticate") or [] if v.startswith("Digest")]
        params = digestclient.params_of(next((c for c in challenges if f"algorithm={self.algorithm}," in c), ""))
        if "nonce" not in params:
            self.tally.problem(f"no Digest {self.algorithm} challenge in a 407: {challenges}")
            return
        self.realm = params["realm"]
        self.use_nonce(params["nonce"])
        self.first = (params["nonce"], self.issued)

    def use_nonce(self, nonce: str) -> None:
        self.nonce, self.issued, self.nc = nonce, time.monotonic(), 0

    def digest(self, kind: str, password: str, nc: int, expected: int,
               nonce: str | None = None) -> http.client.HTTPResponse | None:
        nonce = nonce or self.nonce
        if nonce is None:
            return None

        def credentials(url: str) -> str:
            value = digestclient.answer(user=DIGEST_NTLM_USER, password=password, realm=self.realm, nonce=nonce,
                                        uri=url, algorithm=self.algorithm, nc=f"{nc:08x}", cnonce=f"c{self.number}")
            with self.tally.lock:
                self.tally.digest_responses.add(digestclient.params_of(value)["response"])
            return f"Digest {value}"

        response = self.plain(kind, credentials, "/soak/digest", expected)
        if response is not None and response.status == 200 and nonce == self.nonce:
            self.nc = nc
            self.next_nonce(response)
        return response

    def next_nonce(self, response: http.client.HTTPResponse) -> None:
        """Past half its lifetime, move to the nextnonce the proxy sent (RFC 7616 §3.5)."""
        if time.monotonic() - self.issued < NONCE_TTL_S / 2:
            return
        nextnonce = digestclient.params_of(response.headers.get("Proxy-Authentication-Info", "")).get("nextnonce")
        if nextnonce is None:
            self.tally.problem("a Digest 200 without nextnonce in Proxy-Authentication-Info")
            self.nonce = None
        else:
            self.use_nonce(nextnonce)

    def digest_stale(self) -> None:
        """The right password on the first nonce, once it has expired: 407 with stale=true."""
        if self.first is None or time.monotonic() - self.first[1] < NONCE_TTL_S + 1:
            return
        response = self.digest("digest stale nonce", DIGEST_NTLM_PW, 1, 407, nonce=self.first[0])
        offered = (response.headers.get_all("Proxy-Authenticate") or []) if response is not None else []
        if response is not None and response.status == 407 and not any("stale=true" in c for c in offered):
            self.tally.problem(f"a 407 for an expired nonce without stale=true: {offered}")

    def ntlm(self, kind: str, password: str, expected: int) -> None:
        """A handshake on a new connection, each leg with its own path; when it succeeds, one more request
        without credentials on the authenticated connection."""
        ids: list[str] = []
        url = f"http://127.0.0.1:{self.origin.port}/soak/ntlm"
        host = f"127.0.0.1:{self.origin.port}"

        def head(authorization: str | None = None) -> str:
            ids.append(self.next_id())
            return perconn.get_head(f"{url}/{ids[-1]}", host)(authorization)

        statuses: list[int] = []
        conn = None
        try:
            conn = RawClient(self.proxy_port, timeout=15)
            first, second = handshake(conn, head, DIGEST_NTLM_USER, password)
            statuses = [first[0], second[0]][: len(ids)]
            if statuses[-1] == 200:
                statuses.append(conn.send(head())[0])
        except (OSError, ValueError):  # a dropped connection or a broken challenge: status 0
            statuses += [0] * (len(ids) - len(statuses))
        finally:
            if conn is not None:
                conn.close()
        if not ids:
            self.tally.record(f"{kind}: connect", 0, expected, None)
        legs = zip(ids, statuses, ("type 1", "type 3", "authenticated connection"), (407, expected, 200),
                   strict=False)  # as many legs as requests were sent
        for request_id, status, leg, leg_expected in legs:
            self.tally.record(f"{kind}: {leg}", status, leg_expected, request_id)


def secret_forms() -> list[str]:
    """Every way a secret could show up in a log: cleartext, inside base64 tokens, any NTLM message."""
    forms = [*SECRETS, NTLM_TOKEN]
    for user, password in (("alice", GOOD_PW), ("bob", BCRYPT_PW), (DIGEST_NTLM_USER, DIGEST_NTLM_PW)):
        forms.append(basic(user, password).split(" ", 1)[1])
    return forms


def leaked_digest_responses(text: str, sent: set[str]) -> int:
    """How many Digest responses the clients sent appear in ``text`` (hex words of their lengths)."""
    return len(sent.intersection(re.findall(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{64}\b", text)))


def hop_log_check(path: Path, ids: list[str], connects: int) -> tuple[bool, str]:
    """Every unique request path in exactly one hop-log line, and one line per CONNECT besides."""
    if not path.exists():
        return False, f"hop log {path} was not written"
    seen: collections.Counter[str] = collections.Counter()
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines:
        json.loads(line)  # every line is JSON
        for request_id in set(re.findall(r"/soak/[a-z]+/(\d+-\d+(?:-again)?)\b", line)):
            seen[request_id] += 1
    missing = [i for i in ids if seen[i] == 0]
    twice = [i for i, n in seen.items() if n > 1]
    ok = not missing and not twice and len(lines) == len(ids) + connects
    return ok, (f"{len(lines)} lines for {len(ids)} requests and {connects} CONNECTs; "
                f"missing {len(missing)}, more than once {len(twice)}")


@dataclass
class Proxy:
    """One mitmdump of the soak: its scenario, its clients' kind, what they counted, its RSS over time."""

    name: str
    scenario: str
    client: type[Client]
    dump: Mitmdump | None = None
    hoplog: Path | None = None
    tally: Tally = field(default_factory=Tally)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, RSS)


PROXIES = (("basic", SCENARIO, Client), ("digest-ntlm", SCENARIO_DIGEST_NTLM, DigestNtlmClient))


def start_proxy(proxy: Proxy, folder: Path, with_hoplog: bool) -> None:
    (folder / f"{proxy.name}.yaml").write_text(proxy.scenario)
    options = {"scenario": str(folder / f"{proxy.name}.yaml")}
    if with_hoplog:
        proxy.hoplog = folder / f"hops-{proxy.name}.jsonl"
        options["hoplog"] = str(proxy.hoplog)
    (folder / f"conf-{proxy.name}").mkdir()
    proxy.dump = start_mitmdump(folder, folder / f"conf-{proxy.name}", options=options, name=f"soak-{proxy.name}")


def report_running(proxy: Proxy, duration: float, warmup: float, say: Callable[[str], None]) -> list[str]:
    """Statuses, RSS growth and tracebacks of one proxy, checked while it still runs."""
    assert proxy.dump is not None
    failures = []
    tally = proxy.tally
    after_warmup = next((rss for t, rss in proxy.samples if t >= warmup), proxy.samples[-1][1])
    final = measure.rss_bytes(proxy.dump.proc.pid)
    growth = final / after_warmup - 1
    total = sum(tally.counts.values())
    say(f"{proxy.name}: {total} requests ({total / duration:.0f}/s); RSS after warm-up {measure.mib(after_warmup)}, "
        f"at the end {measure.mib(final)} ({growth:+.1%}, limit +{RSS_GROWTH_LIMIT:.0%})")
    for (kind, status), n in sorted(tally.counts.items()):
        say(f"  {kind:40} {status}: {n}")
    if growth >= RSS_GROWTH_LIMIT:
        failures.append(f"{proxy.name}: RSS grew {growth:.1%} after warm-up")
    if tally.unexpected:
        failures.append(f"{proxy.name}: {len(tally.unexpected)} unexpected answers, e.g. {tally.unexpected[:5]}")
    if not tally.counts:
        failures.append(f"{proxy.name}: no requests were made")
    running_log = proxy.dump.log  # before the stop: mitmproxy itself may print tracebacks while shutting down
    if "Traceback" in running_log:
        at = running_log.index("Traceback")
        failures.append(f"{proxy.name}: traceback in the proxy log:\n" + running_log[max(0, at - 300):][:3000])
    return failures


def check_logs(proxies: list[Proxy], output: list[str], say: Callable[[str], None]) -> list[str]:
    """After the stop: hop logs exactly once per flow, and no secret in any log or in this output."""
    failures = []
    texts = {"soak output": "\n".join(output)}
    for proxy in proxies:
        assert proxy.dump is not None
        texts[f"{proxy.name} proxy log"] = proxy.dump.log
        if proxy.hoplog is None:
            continue
        ok, detail = hop_log_check(proxy.hoplog, proxy.tally.ids, proxy.tally.connects)
        say(f"{proxy.name} hop log: {detail}")
        if not ok:
            failures.append(f"{proxy.name} hop log not exactly once per flow: {detail}")
        if proxy.hoplog.exists():
            texts[f"{proxy.name} hop log"] = proxy.hoplog.read_text(encoding="utf-8", errors="replace")
    digest_responses = set().union(*(p.tally.digest_responses for p in proxies))
    for name, text in texts.items():
        if any(secret in text for secret in secret_forms()):
            failures.append(f"a secret appears in the {name}")
        if leaked_digest_responses(text, digest_responses):
            failures.append(f"a Digest response sent by a client appears in the {name}")
    return failures


def main() -> int:
    duration = float(os.environ.get("SOAK_S", "60"))
    clients = int(os.environ.get("SOAK_CLIENTS", "4"))
    warmup = float(os.environ.get("SOAK_WARMUP_S", duration / 4))
    failures: list[str] = []
    output: list[str] = []

    def say(text: str) -> None:
        output.append(text)
        print(text, flush=True)

    proxies = [Proxy(*spec) for spec in PROXIES]
    with tempfile.TemporaryDirectory(prefix="mitm407-soak-") as tmp:
        folder = Path(tmp)
        import bcrypt

        (folder / "soak.htpasswd").write_text(f"bob:{bcrypt.hashpw(BCRYPT_PW.encode(), bcrypt.gensalt(10)).decode()}\n")
        with_hoplog = HOPLOG_MODULE.exists()
        origin = Origin()
        tls_origin = Origin(make_tls_context(folder))
        try:
            for proxy in proxies:
                start_proxy(proxy, folder, with_hoplog)
            pids = ", ".join(f"{p.name} pid {p.dump.proc.pid}" for p in proxies if p.dump is not None)
            say(f"soak: {clients} clients per proxy for {duration:g} s (warm-up {warmup:g} s) against mitmdump "
                f"{pids}; hop log {'on' if with_hoplog else 'absent (issue 4): exactly-once check skipped'}")
            start = time.monotonic()
            threads = [p.client(n, p.dump.port, origin, tls_origin, p.tally, start + duration)
                       for p in proxies if p.dump is not None for n in range(clients)]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for proxy in proxies:
                    assert proxy.dump is not None
                    proxy.samples.append((time.monotonic() - start, measure.rss_bytes(proxy.dump.proc.pid)))
                time.sleep(1)
            for t in threads:
                t.join(30)
            if any(t.is_alive() for t in threads):
                failures.append("a client stalled (still running 30 s after the end)")
            for proxy in proxies:
                failures += report_running(proxy, duration, warmup, say)
        finally:
            for proxy in proxies:
                if proxy.dump is not None:
                    proxy.dump.stop()
            origin.close()
            tls_origin.close()
        leaked_to_origin = [s for s in origin.seen + tls_origin.seen if "proxy-authorization" in s.headers]
        if leaked_to_origin:
            failures.append(f"{len(leaked_to_origin)} requests reached the origin with Proxy-Authorization")
        failures += check_logs(proxies, output, say)
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    print("soak: " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
