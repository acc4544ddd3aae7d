"""The addons' own cost per request, in process: immune to the noise of a shared machine.

``make bench`` prints it beside the wrk table. Two measures, both in CPU time
(``time.process_time``, best of ``ROUNDS``), so other work on the machine does
not inflate them:

- ``requestheaders`` of ``Addon`` alone (``decide`` -> ``request_facts``,
  ``Authorizer.evaluate``, ``BasicScheme.verify``, header strip) for a cached
  Basic credential and for the 407 path;
- the whole per-request work of every addon ``entry.all_addons()`` installs
  (``Addon``, ``ConnectRelay``, ``HopLog``): ``requestheaders``, ``request``,
  ``responseheaders`` and ``response`` dispatched like mitmproxy's addon
  manager does (awaitables stepped), for a forwarded Basic request with the hop
  log off and on (writing to a temp file), and for the 407 path.

Divided by bare mitmdump's CPU time per request it says how much of the
throughput the addons themselves can cost. ``python hotpath.py --profile``
prints a cProfile of the full path with the hop log on (what to look at first
when the ratio drops).
"""

from __future__ import annotations

import base64
import cProfile
import inspect
import logging
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import measure  # puts addons/ on sys.path: keep it first

from mitm407.proxy.addon import Addon
from mitm407.scenario.load import parse_scenario

ROUNDS = 5
HOOKS = ("requestheaders", "request", "responseheaders", "response")


BASIC = 'version: 1\nusers: {bench: "pw"}\nschemes: [basic]\n'
DIGEST = ('version: 1\nusers: {bench: "pw"}\nschemes: [digest]\n'
          "digest: {algorithms: [MD5], qop: [], rfc2069: true, nonce_ttl: 86400}\n")  # as bench/run.py's row


def make_scenario(text: str = BASIC) -> Any:
    folder = Path(tempfile.mkdtemp(prefix="mitm407-hotpath-"))
    return parse_scenario(text, str(folder / "s.yaml"), folder)


def digest_answer(addon: Addon) -> str:
    """An RFC 2069 answer to one of the addon's challenges, replayed on every request like the wrk row."""
    import hashlib
    import re

    from mitm407.proxy.addon import request_facts

    flow = make_flow_factory()(False)
    challenge = addon.gate.authorizer.challenges(request_facts(flow))[0]
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    realm, nonce, uri = params["realm"], params["nonce"], flow.request.url
    answer = md5(f"{md5(f'bench:{realm}:pw')}:{nonce}:{md5(f'GET:{uri}')}")
    return (f'Digest username="bench", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{answer}", '
            "algorithm=MD5")


def make_flow_factory(header: str = "Basic " + base64.b64encode(b"bench:pw").decode()) -> Callable[[bool], Any]:
    """A factory of absolute-form proxy flows (regular mode), with or without credentials."""
    from mitmproxy.test import tflow

    def flow(with_credentials: bool) -> Any:
        f = tflow.tflow()
        f.request.url = "http://127.0.0.1:8000/index.html"
        if with_credentials:
            f.request.headers["Proxy-Authorization"] = header
        return f

    return flow


def make_addon() -> tuple[Addon, Callable[[bool], object]]:
    """An addon with a one-user Basic scenario, and a factory of absolute-form proxy flows."""
    addon = Addon()
    addon.install(make_scenario())
    return addon, make_flow_factory()


def step(result: object) -> None:
    """Run an awaitable a hook returned to its end; it must not wait (no fault 'delay' here)."""
    if result is None or not inspect.isawaitable(result):
        return
    coroutine = result if inspect.iscoroutine(result) else result.__await__()
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("a hook waited for something: the hot path must not")


def call_hook(addon: Addon, flow: object) -> None:
    """``requestheaders`` of one addon."""
    step(addon.requestheaders(flow))


def dispatch(addons: Sequence[object], name: str, flow: object) -> None:
    """One event to every addon that has the hook, in order, as mitmproxy's addon manager does."""
    for addon in addons:
        func = getattr(addon, name, None)
        if func is not None:
            step(func(flow))


def full_request(addons: Sequence[object], flow: Any, response: Any) -> None:
    """Every per-request hook of a proxied request; ``response`` is what the origin sent."""
    dispatch(addons, "requestheaders", flow)
    dispatch(addons, "request", flow)
    if flow.response is None:
        flow.response = response
    dispatch(addons, "responseheaders", flow)
    dispatch(addons, "response", flow)


def best_cpu_us(run: Callable[[Any], None], make: Callable[[], Any], n: int) -> float:
    """Best of ``ROUNDS`` CPU timings of ``run`` over ``n`` fresh inputs, in microseconds per call."""
    best = float("inf")
    for _ in range(ROUNDS):
        inputs = [make() for _ in range(n)]
        start = time.process_time()
        for item in inputs:
            run(item)
        best = min(best, (time.process_time() - start) / n * 1e6)
    return best


def origin_response() -> Any:
    """A 200 like nginx's for the benchmark's static file."""
    from mitmproxy import http

    return http.Response.make(200, b"x" * 612, {"Server": "nginx/1.22.1", "Content-Type": "text/html",
                                                 "Content-Length": "612"})


def all_addons_costs(n: int, profile: bool = False) -> dict[str, float]:
    from mitmproxy.test import taddons

    from mitm407.entry import all_addons
    from mitm407.proxy.addon import Addon

    addons = all_addons()
    auth = next(addon for addon in addons if isinstance(addon, Addon))  # the authenticating addon, wherever listed
    make_flow = make_flow_factory()
    auth.install(make_scenario())
    log = Path(tempfile.mkdtemp(prefix="mitm407-hotpath-")) / "hop.jsonl"
    costs: dict[str, float] = {}
    with taddons.context(*addons) as tctx:
        tctx.options.hop_name = "mitm407"

        def run(item: tuple[Any, Any]) -> None:
            full_request(addons, *item)

        costs["all_addons_basic_us"] = best_cpu_us(run, lambda: (make_flow(True), origin_response()), n)
        costs["all_addons_407_us"] = best_cpu_us(run, lambda: (make_flow(False), origin_response()), n)
        tctx.options.hoplog = str(log)
        costs["all_addons_basic_hoplog_us"] = best_cpu_us(run, lambda: (make_flow(True), origin_response()), n)
        if profile:
            items = [(make_flow(True), origin_response()) for _ in range(n)]
            profiler = cProfile.Profile()
            profiler.enable()
            for item in items:
                run(item)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        tctx.options.hoplog = ""
        auth.install(make_scenario(DIGEST))
        make_digest_flow = make_flow_factory(digest_answer(auth))
        costs["all_addons_digest_us"] = best_cpu_us(run, lambda: (make_digest_flow(True), origin_response()), n)
        probe = make_digest_flow(True)
        run((probe, origin_response()))
        if probe.response.status_code != 200:
            raise RuntimeError("the Digest answer of the hot path benchmark was refused")
    return costs


def hook_costs(n: int = 5000, profile: bool = False) -> dict[str, float]:
    from mitmproxy.test import taddons

    logging.getLogger("mitm407").setLevel(logging.WARNING)  # the 407 path logs each refusal: not timed here
    addon, make_flow = make_addon()
    with taddons.context(addon) as tctx:
        tctx.options.hop_name = "mitm407"
        costs = {
            "basic_cached_us": best_cpu_us(lambda f: call_hook(addon, f), lambda: make_flow(True), n),
            "challenge_407_us": best_cpu_us(lambda f: call_hook(addon, f), lambda: make_flow(False), n),
        }
    costs.update(all_addons_costs(n, profile))
    return costs


def main() -> int:
    costs = hook_costs(profile="--profile" in sys.argv)
    for name, value in costs.items():
        print(f"{name}: {value:.1f} us per request")
    print(f"(CPU time, measured in process on {measure.machine()['cpu']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
