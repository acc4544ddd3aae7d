"""Soak test (``make soak``): concurrent mixed clients against one mitmdump for ``SOAK_S`` seconds.

Clients send good, wrong, unknown-user and missing credentials, bypassed and denied paths, faults
(``delay``, ``close_on_407``), and CONNECT tunnels (good and bad credentials) to a local TLS origin,
each request with a unique path ``/soak/<kind>/<client>-<n>``. Afterwards it asserts:

- every request got the status its kind must get (no 500, no stall, no dropped connection);
- no secret (password or base64 token) appears in the proxy log, the hop log, or this output, and
  the origin never received a ``Proxy-Authorization`` header;
- no traceback in the proxy log;
- the proxy's RSS grew less than 10 % between the end of the warm-up and the end;
- when the hop log exists (``addons/mitm407/hoplog.py``, issue 4): every request's unique path
  appears in exactly one hop-log line, and there is one more line per CONNECT. Without it that check
  is skipped and says so.

Environment: ``SOAK_S`` (default 60), ``SOAK_CLIENTS`` (default 4), ``SOAK_WARMUP_S`` (default: a
quarter of ``SOAK_S``).
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
from dataclasses import dataclass, field
from pathlib import Path

import measure  # puts addons/ and tests/ on sys.path: keep it first

from procs import Origin, basic, make_tls_context, start_mitmdump

GOOD_PW, BCRYPT_PW = "soak-secret-3b9d1e", "soak-bcrypt-77aa0c"
SECRETS = (GOOD_PW, BCRYPT_PW)
HOPLOG_MODULE = measure.REPO / "addons" / "mitm407" / "hoplog.py"
RSS_GROWTH_LIMIT = 0.10

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


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: collections.Counter = field(default_factory=collections.Counter)
    unexpected: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # unique paths the proxy must have logged
    connects: int = 0  # CONNECT requests: one hop-log line each, besides the requests inside

    def record(self, kind: str, status: int, expected: int, request_id: str | None) -> None:
        with self.lock:
            self.counts[(kind, status)] += 1
            if status != expected:
                self.unexpected.append(f"{kind}: {status} (expected {expected})")
            if request_id is not None:
                self.ids.append(request_id)


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

    def plain(self, kind: str, credentials: str | None, path: str, expected: int) -> None:
        request_id = self.next_id()
        headers = {"Proxy-Authorization": credentials} if credentials else {}
        url = f"http://127.0.0.1:{self.origin.port}{path}/{request_id}"
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=15)
            self.conn.request("GET", url, headers=headers)
            response = self.conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):  # a dropped or stalled connection: status 0
            status = 0
            self.conn = None
        self.tally.record(kind, status, expected, request_id)

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

    def run(self) -> None:
        good, bcrypt_good = basic("alice", GOOD_PW), basic("bob", BCRYPT_PW)
        steps = [
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
        for step in itertools.cycle(steps):
            if time.monotonic() >= self.end:
                break
            step()
        if self.conn is not None:
            self.conn.close()


def secret_forms() -> list[str]:
    """Every way a secret could show up in a log: cleartext and inside base64 tokens."""
    forms = list(SECRETS)
    for user, password in (("alice", GOOD_PW), ("bob", BCRYPT_PW)):
        forms.append(basic(user, password).split(" ", 1)[1])
    return forms


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


def main() -> int:
    duration = float(os.environ.get("SOAK_S", "60"))
    clients = int(os.environ.get("SOAK_CLIENTS", "4"))
    warmup = float(os.environ.get("SOAK_WARMUP_S", duration / 4))
    failures: list[str] = []
    output: list[str] = []

    def say(text: str) -> None:
        output.append(text)
        print(text, flush=True)

    with tempfile.TemporaryDirectory(prefix="mitm407-soak-") as tmp:
        folder = Path(tmp)
        import bcrypt

        (folder / "soak.htpasswd").write_text(f"bob:{bcrypt.hashpw(BCRYPT_PW.encode(), bcrypt.gensalt(10)).decode()}\n")
        (folder / "soak.yaml").write_text(SCENARIO)
        options = {"scenario": str(folder / "soak.yaml")}
        hoplog = folder / "hops.jsonl"
        with_hoplog = HOPLOG_MODULE.exists()
        if with_hoplog:
            options["hoplog"] = str(hoplog)
        origin = Origin()
        tls_origin = Origin(make_tls_context(folder))
        (folder / "conf").mkdir()
        proxy = start_mitmdump(folder, folder / "conf", options=options, name="soak")
        try:
            say(f"soak: {clients} clients for {duration:g} s (warm-up {warmup:g} s) against mitmdump pid "
                f"{proxy.proc.pid}; hop log {'on' if with_hoplog else 'absent (issue 4): exactly-once check skipped'}")
            tally = Tally()
            start = time.monotonic()
            threads = [Client(n, proxy.port, origin, tls_origin, tally, start + duration) for n in range(clients)]
            for t in threads:
                t.start()
            samples: list[tuple[float, int]] = []
            while any(t.is_alive() for t in threads):
                samples.append((time.monotonic() - start, measure.rss_bytes(proxy.proc.pid)))
                time.sleep(1)
            for t in threads:
                t.join(30)
            if any(t.is_alive() for t in threads):
                failures.append("a client stalled (still running 30 s after the end)")
            after_warmup = next((rss for t, rss in samples if t >= warmup), samples[-1][1])
            final = measure.rss_bytes(proxy.proc.pid)
            growth = final / after_warmup - 1
            total = sum(tally.counts.values())
            say(f"{total} requests ({total / duration:.0f}/s); RSS after warm-up {measure.mib(after_warmup)}, "
                f"at the end {measure.mib(final)} ({growth:+.1%}, limit +{RSS_GROWTH_LIMIT:.0%})")
            for (kind, status), n in sorted(tally.counts.items()):
                say(f"  {kind:28} {status}: {n}")
            if growth >= RSS_GROWTH_LIMIT:
                failures.append(f"RSS grew {growth:.1%} after warm-up")
            if tally.unexpected:
                failures.append(f"{len(tally.unexpected)} unexpected answers, e.g. {tally.unexpected[:5]}")
            if not tally.counts:
                failures.append("no requests were made")
            running_log = proxy.log  # before the stop: mitmproxy itself may print tracebacks while shutting down
            if "Traceback" in running_log:
                at = running_log.index("Traceback")
                failures.append("traceback in the proxy log:\n" + running_log[max(0, at - 300):][:3000])
        finally:
            proxy.stop()
            origin.close()
            tls_origin.close()
        log = proxy.log
        leaked_to_origin = [s for s in origin.seen + tls_origin.seen if "proxy-authorization" in s.headers]
        if leaked_to_origin:
            failures.append(f"{len(leaked_to_origin)} requests reached the origin with Proxy-Authorization")
        if with_hoplog:
            ok, detail = hop_log_check(hoplog, tally.ids, tally.connects)
            say(f"hop log: {detail}")
            if not ok:
                failures.append(f"hop log not exactly once per flow: {detail}")
        texts = {"proxy log": log, "soak output": "\n".join(output)}
        if with_hoplog and hoplog.exists():
            texts["hop log"] = hoplog.read_text(encoding="utf-8", errors="replace")
        for name, text in texts.items():
            for secret in secret_forms():
                if secret in text:
                    failures.append(f"a secret appears in the {name}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    print("soak: " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
