"""mitmproxy's whole addon chain per request, with and without a script, in one process (A/B).

``hotpath.py`` times mitm407's hooks alone; a running proxy also pays
mitmproxy's dispatch: for every event of every request (``requestheaders``,
``request``, ``responseheaders``, ``response`` and an ``update`` after each)
the addon manager walks every addon, a script's nested ones included, looks
the hook up and calls it. This builds mitmdump's real addon chain
(``DumpMaster``, no server), pushes synthetic requests through all four events,
and alternates: bare chain, the same chain with the script loaded, bare, ...
Each pair is measured in the same process seconds apart, so the difference
(CPU time per request, best of 3 batches) is the script's cost, dispatch
included, with little of the noise of separate processes (each variant runs in
a fresh process of its own). It is what found
that ``Headers.get_all``/``del`` dominated ``requestheaders``.

Usage: ``python chain.py [VARIANT ...]`` (default: every variant), environment
``CHAIN_REQUESTS`` (per batch, default 1500), ``CHAIN_ROUNDS`` (default 4).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import measure  # puts addons/ and tests/ on sys.path: keep it first
from mitmproxy import hooks, http, options
from mitmproxy.proxy.layers import http as http_hooks
from mitmproxy.test import tflow
from mitmproxy.tools.dump import DumpMaster

import digestclient

USER, PASSWORD = "bench", "chain-pw-51c2"  # throwaway credentials of this measurement only
URL = "http://127.0.0.1:8000/index.html"
BASIC = f'version: 1\nusers: {{{USER}: "{PASSWORD}"}}\nschemes: [basic]\n'
DIGEST = (f'version: 1\nusers: {{{USER}: "{PASSWORD}"}}\nschemes: [digest]\n'
          "digest: {algorithms: [MD5], qop: [], rfc2069: true, nonce_ttl: 86400}\n")  # as run.py's row
BASIC_TOKEN = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
PROXYAUTH = str(measure.REPO / "addons" / "proxyauth.py")


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    script: str
    scenario: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # {dir} is the temp folder
    credentials: Callable[[Chain], Awaitable[str | None]] | None = None
    expect: int = 200


async def basic(chain: Chain) -> str:
    return BASIC_TOKEN


async def digest(chain: Chain) -> str:
    """One RFC 2069 answer to the proxy's challenge, replayed (like run.py's wrk row)."""
    flow = chain.new_flow(None)
    await chain.one(flow)
    challenge = next(v for k, v in flow.response.headers.items(multi=True)
                     if k.lower() == "proxy-authenticate" and v.startswith("Digest"))
    params = digestclient.params_of(challenge)
    return "Digest " + digestclient.answer(user=USER, password=PASSWORD, realm=params["realm"], nonce=params["nonce"],
                                           uri=URL, algorithm="MD5", qop=None, opaque=params.get("opaque"))


VARIANTS = (
    Variant("noop", "an empty addon script (floor)", str(measure.REPO / "bench" / "noop_addon.py")),
    Variant("basic", "mitm407 Basic", PROXYAUTH, BASIC, credentials=basic),
    Variant("basic-hoplog", "mitm407 Basic + hop log file", PROXYAUTH, BASIC, {"hoplog": "{dir}/hops.jsonl"},
            credentials=basic),
    Variant("407", "mitm407 407 (no credentials)", PROXYAUTH, BASIC, expect=407),
    Variant("digest-md5", "mitm407 Digest MD5", PROXYAUTH, DIGEST, credentials=digest),
)


class Chain:
    """mitmdump's addon chain without a server, fed synthetic forward-proxy requests."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.options = options.Options()
        self.master = DumpMaster(self.options, with_termlog=False, with_dumper=True)
        self.options.update(server=False, flow_detail=0)
        self.master.addons.trigger(hooks.RunningHook())
        self.response = http.Response.make(200, b"<html>chain</html>", {"Content-Type": "text/html", "Server": "nginx"})

    def new_flow(self, credentials: str | None) -> Any:
        flow = tflow.tflow(resp=False)
        flow.request = http.Request.make("GET", URL, headers={"Host": "127.0.0.1:8000"})
        flow.request.authority = ""  # mitmproxy hands hooks the origin form
        if credentials:
            flow.request.headers["Proxy-Authorization"] = credentials
        return flow

    async def one(self, flow: Any) -> None:
        addons = self.master.addons
        await addons.handle_lifecycle(http_hooks.HttpRequestHeadersHook(flow))
        await addons.handle_lifecycle(http_hooks.HttpRequestHook(flow))
        if flow.response is None:
            flow.response = self.response.copy()
            await addons.handle_lifecycle(http_hooks.HttpResponseHeadersHook(flow))
        await addons.handle_lifecycle(http_hooks.HttpResponseHook(flow))

    async def batch(self, credentials: str | None, n: int) -> tuple[float, int]:
        """CPU µs per request, best of 3 batches; and the last response's status."""
        best, status = float("inf"), 0
        for _ in range(3):
            flows = [self.new_flow(credentials) for _ in range(n)]
            start = time.process_time()
            for flow in flows:
                await self.one(flow)
            best = min(best, (time.process_time() - start) / n * 1e6)
            status = flows[-1].response.status_code
        return best, status

    async def load(self, variant: Variant) -> None:
        """Load the script (mitmproxy's watcher loads it on the loop) and set its options again."""
        extra = {k: v.format(dir=self.folder) for k, v in variant.options.items()}
        if variant.scenario is not None:
            path = self.folder / f"{variant.key}.yaml"
            path.write_text(variant.scenario)
            extra["scenario"] = str(path)
        self.options.update_defer(**extra)
        self.options.update(scripts=[variant.script])
        await asyncio.sleep(1.2)
        if extra:
            self.options.update(**extra)  # a reload re-adds the script's options with their defaults

    async def unload(self) -> None:
        self.options.update(scripts=[])
        await asyncio.sleep(0.05)


async def measure_variant(chain: Chain, variant: Variant, n: int, rounds: int) -> dict[str, Any]:
    diffs, bare_costs = [], []
    for _ in range(rounds):
        await chain.unload()
        bare, _ = await chain.batch(None, n)
        await chain.load(variant)
        credentials = await variant.credentials(chain) if variant.credentials else None
        await chain.batch(credentials, 100)  # warm-up: caches, first-use imports
        cost, status = await chain.batch(credentials, n)
        if status != variant.expect:
            raise RuntimeError(f"{variant.key}: status {status}, expected {variant.expect}")
        diffs.append(cost - bare)
        bare_costs.append(bare)
    return {"key": variant.key, "label": variant.label, "bare_us": round(statistics.median(bare_costs), 1),
            "extra_us": round(statistics.median(diffs), 1), "range_us": [round(min(diffs), 1), round(max(diffs), 1)]}


def main() -> int:
    n = int(os.environ.get("CHAIN_REQUESTS", "1500"))
    rounds = int(os.environ.get("CHAIN_ROUNDS", "4"))
    wanted = set(sys.argv[1:])
    unknown = wanted - {v.key for v in VARIANTS}
    if unknown:
        print(f"unknown variants: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if os.environ.get("CHAIN_ONE"):  # the child: one variant, a JSON line on stdout
        variant = next(v for v in VARIANTS if v.key == os.environ["CHAIN_ONE"])
        logging.disable(logging.WARNING)
        with contextlib.redirect_stderr(io.StringIO()):  # the hop log's exit summary
            row = asyncio.run(run(variant, n, rounds))
        print(json.dumps(row))
        return 0
    # one fresh process per variant: a chain that loaded other scripts before measures worse
    print(f"{'variant':34} {'bare chain':>11} {'+ script':>9}  range (µs per request, CPU)")
    for variant in VARIANTS:
        if wanted and variant.key not in wanted:
            continue
        child = subprocess.run([sys.executable, __file__], env={**os.environ, "CHAIN_ONE": variant.key},
                               capture_output=True, text=True, timeout=600)
        if child.returncode != 0:
            print(f"{variant.key}: failed\n{child.stderr[-2000:]}", file=sys.stderr)
            return 1
        row = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{row['label']:34} {row['bare_us']:9.1f}µs {row['extra_us']:+8.1f}µs  "
              f"{row['range_us'][0]:+.1f}..{row['range_us'][1]:+.1f}", flush=True)
    return 0


async def run(variant: Variant, n: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mitm407-chain-") as folder:
        return await measure_variant(Chain(Path(folder)), variant, n, rounds)


if __name__ == "__main__":
    sys.exit(main())
