"""Load that wrk cannot make: one new proxy connection per unit of work (``bench/run.py``'s driver rows).

NTLM authenticates a connection with a three-leg handshake that needs a fresh
client token per connection, so wrk's fixed request cannot drive it. This
driver runs ``threads`` client threads for ``duration`` seconds, each opening
a new connection per unit (an NTLM handshake, or one plain request for bare
mitmdump under the same driver, so that ratios compare like with like), and
returns a sample shaped like wrk's (``requests``, error counts, ``seconds``).
The driver's threads are pinned to the load core, like wrk.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable

import measure  # puts addons/ and tests/ on sys.path: keep it first

from ntlmclient import RawClient, handshake

Exchange = Callable[[RawClient], bool]  # one unit on a fresh connection; True when it ended as expected


def get_head(url: str, host: str) -> Callable[[str | None], str]:
    """A GET through a forward proxy (absolute URL, explicit Host), with or without credentials."""
    def head(authorization: str | None = None) -> str:
        extra = f"Proxy-Authorization: {authorization}\r\n" if authorization else ""
        return f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra}"
    return head


def plain_exchange(url: str, host: str) -> Exchange:
    """One request without credentials: 200 from the origin (bare mitmdump)."""
    head = get_head(url, host)
    return lambda conn: conn.send(head())[0] == 200


def ntlm_exchange(url: str, host: str, user: str, password: str) -> Exchange:
    """A full NTLM handshake: 407 with the type 2, then 200 from the origin for the type 3."""
    head = get_head(url, host)

    def exchange(conn: RawClient) -> bool:
        first, second = handshake(conn, head, user, password)
        return first[0] == 407 and second[0] == 200
    return exchange


def worker(port: int, exchange: Exchange, end: float, counts: collections.Counter) -> None:
    while time.monotonic() < end:
        try:
            conn = RawClient(port)
        except OSError:
            counts["connect"] += 1
            continue
        try:
            ok = exchange(conn)
        except (OSError, ValueError):  # a dropped connection, a timeout, a malformed challenge
            counts["read"] += 1
            continue
        finally:
            conn.close()
        counts["requests"] += 1
        counts["status"] += not ok


def drive(port: int, exchange: Exchange, duration: float, threads: int) -> dict[str, float]:
    """``threads`` clients for ``duration`` s; a wrk-shaped sample (``status`` counts wrong answers)."""
    saved = os.sched_getaffinity(0) if measure.can_pin() else None
    measure.pin(os.getpid(), measure.LOAD_CPU)
    try:
        per_thread = [collections.Counter() for _ in range(threads)]
        start = time.monotonic()
        pool = [threading.Thread(target=worker, args=(port, exchange, start + duration, c), daemon=True)
                for c in per_thread]
        for t in pool:
            t.start()
        for t in pool:
            t.join(duration + 30)
        seconds = time.monotonic() - start
    finally:
        if saved is not None:
            measure.pin(os.getpid(), saved)
    total = sum(per_thread, collections.Counter())
    sample = {key: float(total[key]) for key in ("requests", "status", "connect", "read", "write", "timeout")}
    sample["timeout"] += sum(t.is_alive() for t in pool)  # a thread still stuck after the join: a stall
    sample.update(seconds=seconds, duration_us=seconds * 1e6)
    return sample
