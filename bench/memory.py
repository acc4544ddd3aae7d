"""Memory and scale (``make bench-memory``): caches stay within their caps; big htpasswd files load fast.

1. Resident memory before and after 1,000,000 entries go into each bounded
   store a scheme keeps, through the scheme's own ``verify``, with the store's
   cap at its default: it must stop growing at the cap (and evicting must stay
   cheap). ``STORES`` has one line per store: Basic's verified-credentials
   cache (1M distinct valid credentials, ``cache.max_entries``), Digest's
   nonce-count store (1M nonces each answered once with ``qop=auth``,
   ``digest.nc_store_size``) and NTLM's pending handshakes (1M connections
   that send a type 1 and never the type 3, ``ntlm.max_handshakes``).
2. A 100,000-user bcrypt htpasswd scenario: load time, reload time (the
   addon's reload path: ``load_scenario`` + ``Authorizer``), and the first
   request of one user (bcrypt verified lazily, once).

Environment: ``MEMORY_ENTRIES`` (default 1000000), ``MEMORY_USERS`` (100000),
``BENCH_OUT`` (folder for memory.json, default ``bench/``). Exits 1 when a
bound or a time limit is not met.
"""

from __future__ import annotations

import base64
import gc
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import measure  # puts addons/ on sys.path: keep it first

import digestclient
import ntlmclient
from mitm407.core.credentials import Secret, User
from mitm407.core.facts import RequestFacts
from mitm407.core.results import Result
from mitm407.gate.authorizer import Authorizer
from mitm407.scenario.load import CacheConfig, load_scenario
from mitm407.schemes.base import SchemeContext
from mitm407.schemes.basic import BasicScheme
from mitm407.schemes.digest import DigestOptions, DigestScheme
from mitm407.schemes.ntlm import NtlmScheme
from mitm407.schemes.ntlm_acceptor import NtlmOptions

FACTS = RequestFacts("GET", "http://127.0.0.1/", "127.0.0.1", 80, "/", "127.0.0.1", "c1")
LOAD_LIMIT_S = 1.0


class AnyUser(Mapping[str, User]):
    """Every name is a user with the same password: a million valid credentials without a million users."""

    def __init__(self, password: str) -> None:
        self.secret = Secret("cleartext", password)

    def __getitem__(self, name: str) -> User:
        return User(name, self.secret, "bench")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@dataclass(frozen=True)
class Store:
    """A bounded per-request store: ``fill(n, cap)`` inserts n entries, yielding (inserted, kept) now and then."""

    name: str
    fill: Callable[[int, int], Iterator[tuple[int, int]]]
    cap: int  # the option's default: what a scenario that does not set it gets
    option: str  # the scenario key that sets the cap


def checkpoint(i: int, n: int, cap: int) -> bool:
    """Every tenth of the run, and the moment the cap is reached."""
    return (i + 1) % (n // 10 or 1) == 0 or i + 1 == cap


def fill_basic_cache(n: int, cap: int) -> Iterator[tuple[int, int]]:
    scheme = BasicScheme(SchemeContext(realm="bench", users=AnyUser("pw"), cache_size=cap))
    for i in range(n):
        token = base64.b64encode(f"user{i}:pw".encode()).decode()
        assert scheme.verify(token, FACTS).result is Result.OK
        if checkpoint(i, n, cap):
            yield i + 1, len(scheme._verified)


def fill_digest_nonces(n: int, cap: int) -> Iterator[tuple[int, int]]:
    """A new nonce per request, answered once with qop=auth: each leaves an ``nc`` record behind."""
    scheme = DigestScheme(SchemeContext(realm="bench", users={"u": User("u", Secret("cleartext", "pw"), "bench")},
                                        options=DigestOptions(algorithms=("MD5",), nc_store_size=cap)))
    for i in range(n):
        nonce = scheme.nonces.issue()
        answer = digestclient.answer(user="u", password="pw", realm="bench", nonce=nonce, uri=FACTS.path)
        assert scheme.verify(answer, FACTS).result is Result.OK
        if checkpoint(i, n, cap):
            yield i + 1, len(scheme.replays)


def fill_ntlm_handshakes(n: int, cap: int) -> Iterator[tuple[int, int]]:
    """A type 1 on a new connection each time, never followed by its type 3 (nor a close)."""
    scheme = NtlmScheme(SchemeContext(realm="bench", users={}, options=NtlmOptions(max_handshakes=cap),
                                      clock=time.monotonic))
    type1 = ntlmclient.b64(ntlmclient.client("u", "pw").step())  # the same bytes will do: the state is per connection
    for i in range(n):
        facts = replace(FACTS, connection_id=f"c{i}")
        assert scheme.verify(type1, facts).result is Result.CONTINUE
        if checkpoint(i, n, cap):
            yield i + 1, len(scheme.acceptor.pending)


STORES: tuple[Store, ...] = (
    Store("basic verified-credentials cache", fill_basic_cache, CacheConfig().max_entries, "cache.max_entries"),
    Store("digest nonce counts", fill_digest_nonces, DigestOptions().nc_store_size, "digest.nc_store_size"),
    Store("ntlm pending handshakes", fill_ntlm_handshakes, NtlmOptions().max_handshakes, "ntlm.max_handshakes"),
)


def measure_store(store: Store, n: int, cap: int) -> dict[str, object]:
    """RSS at checkpoints while filling: bounded means it stops growing once the cap is reached."""
    gc.collect()
    before = measure.rss_bytes()
    start = time.perf_counter()
    points = []
    for inserted, kept in store.fill(n, cap):
        points.append({"inserted": inserted, "kept": kept, "rss": measure.rss_bytes(),
                       "seconds": time.perf_counter() - start})
    seconds = time.perf_counter() - start
    at_cap = next(p for p in points if p["inserted"] >= cap)
    last = points[-1]
    return {
        "store": store.name,
        "option": store.option,
        "inserted": n,
        "cap": cap,
        "kept": last["kept"],
        "rss_before": before,
        "rss_at_cap": at_cap["rss"],
        "rss_after": last["rss"],
        "growth_after_cap": last["rss"] - at_cap["rss"],
        "us_per_insert": seconds / n * 1e6,
        "points": points,
        # bounded: nothing kept beyond the cap, and the memory after n entries at most twice what filling up
        # to the cap took (dict resizes and allocator slack; it plateaus, see the points)
        "bounded": last["kept"] <= cap and last["rss"] - before <= 2 * (at_cap["rss"] - before),
    }


def measure_isolated(store: Store, n: int, cap: int) -> dict[str, object]:
    """``measure_store`` in a fresh child process: memory an earlier store freed (kept by the allocator)
    would otherwise hide the growth of the next one."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(measure_store, (store, n, cap))


def write_htpasswd_scenario(folder: Path, users: int) -> Path:
    import bcrypt

    # One precomputed bcrypt hash shared by every user keeps generation fast;
    # loading never runs bcrypt (verification is lazy), so the file is realistic for load time.
    shared = bcrypt.hashpw(b"pw", bcrypt.gensalt(10)).decode()
    with open(folder / "big.htpasswd", "w") as f:
        for i in range(users):
            f.write(f"user{i}:{shared}\n")
    scenario = folder / "big.yaml"
    scenario.write_text("version: 1\nname: big-htpasswd\nhtpasswd: big.htpasswd\nschemes: [basic]\n")
    return scenario


def measure_htpasswd(users: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="mitm407-mem-") as tmp:
        path = write_htpasswd_scenario(Path(tmp), users)
        gc.collect()
        before = measure.rss_bytes()
        start = time.perf_counter()
        scenario = load_scenario(path)
        authorizer = Authorizer(scenario)
        load_s = time.perf_counter() - start
        rss = measure.rss_bytes() - before
        start = time.perf_counter()
        scenario = load_scenario(path)  # what the reload watcher does on an edit
        authorizer = Authorizer(scenario)
        reload_s = time.perf_counter() - start
        token = "Basic " + base64.b64encode(f"user{users - 1}:pw".encode()).decode()
        start = time.perf_counter()
        first = authorizer.evaluate(FACTS, [token], "Proxy-Authorization")
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(1000):
            second = authorizer.evaluate(FACTS, [token], "Proxy-Authorization")
        second_s = (time.perf_counter() - start) / 1000
        assert first.auth.result is Result.OK and second.auth.result is Result.OK
        return {
            "users": len(scenario.users),
            "load_s": load_s,
            "reload_s": reload_s,
            "rss_growth": rss,
            "first_request_s": first_s,
            "cached_request_us": second_s * 1e6,
            "fast_enough": load_s < LOAD_LIMIT_S and reload_s < LOAD_LIMIT_S,
        }


def main() -> int:
    n = int(os.environ.get("MEMORY_ENTRIES", "1000000"))
    users = int(os.environ.get("MEMORY_USERS", "100000"))
    info = measure.machine()
    stores = []
    for store in STORES:
        print(f"filling {store.name} with {n:,} entries (cap {store.option} = {store.cap:,}) ...", flush=True)
        result = measure_isolated(store, n, store.cap)
        stores.append(result)
        for p in result["points"]:
            print(f"  {p['inserted']:>9,} inserted, {p['kept']:>9,} kept: RSS {measure.mib(p['rss'])} "
                  f"({p['seconds']:.1f} s)")
        print(
            f"  RSS before {measure.mib(result['rss_before'])}, at the cap {measure.mib(result['rss_at_cap'])}, "
            f"after {n:,} {measure.mib(result['rss_after'])}; {result['us_per_insert']:.1f} us per insert: "
            f"{'bounded' if result['bounded'] else 'NOT BOUNDED'}"
        )
    print(f"loading a {users:,}-user bcrypt htpasswd scenario ...", flush=True)
    big = measure_htpasswd(users)
    print(
        f"  load {big['load_s']:.2f} s, reload {big['reload_s']:.2f} s, +{measure.mib(big['rss_growth'])}; "
        f"first request of a user {big['first_request_s'] * 1000:.0f} ms (one bcrypt), "
        f"cached {big['cached_request_us']:.0f} us"
    )
    out_dir = Path(os.environ.get("BENCH_OUT", measure.REPO / "bench"))
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "stores": stores, "htpasswd": big}
    (out_dir / "memory.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_dir / 'memory.json'}")
    ok = all(s["bounded"] for s in stores)
    ok = ok and bool(big["fast_enough"])
    if not ok:
        print("FAILED: a store exceeded its cap or loading took longer than 1 s", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
