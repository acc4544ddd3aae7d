"""The addon's own cost per request, in process: immune to the noise of a shared machine.

``make bench`` prints it beside the wrk table: microseconds the ``requestheaders`` hook spends
(``authorize`` -> ``request_facts``, ``Authorizer.evaluate``, ``BasicScheme.verify``, header strip)
for a cached Basic credential and for the 407 path. Divided by bare mitmdump's CPU time per request
it says how much of the throughput mitm407 itself can cost. ``python hotpath.py --profile`` prints
a cProfile of the hook as well (what to look at first when the ratio drops).
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
from collections.abc import Callable
from pathlib import Path

import measure  # puts addons/ on sys.path: keep it first

from mitm407.addon import Addon
from mitm407.scenario import parse_scenario

ROUNDS = 5


def make_addon() -> tuple[Addon, Callable[[bool], object]]:
    """An addon with a one-user Basic scenario, and a factory of absolute-form proxy flows."""
    from mitmproxy.test import tflow

    folder = Path(tempfile.mkdtemp(prefix="mitm407-hotpath-"))
    addon = Addon()
    addon.install(parse_scenario('version: 1\nusers: {bench: "pw"}\nschemes: [basic]\n', str(folder / "s.yaml"),
                                 folder))
    header = "Basic " + base64.b64encode(b"bench:pw").decode()

    def flow(with_credentials: bool) -> object:
        f = tflow.tflow()
        f.request.url = "http://127.0.0.1:8000/index.html"
        if with_credentials:
            f.request.headers["Proxy-Authorization"] = header
        return f

    return addon, flow


def call_hook(addon: Addon, flow: object) -> None:
    """``requestheaders`` may be a coroutine (it awaits only for fault 'delay'): step it to the end."""
    result = addon.requestheaders(flow)
    if inspect.iscoroutine(result):
        try:
            result.send(None)
        except StopIteration:
            return
        result.close()
        raise RuntimeError("requestheaders waited for something: the hot path must not")


def time_hook(addon: Addon, make_flow: Callable[[bool], object], with_credentials: bool, n: int) -> float:
    """Best of ``ROUNDS`` timings of ``requestheaders``, in microseconds per call."""
    best = float("inf")
    for _ in range(ROUNDS):
        flows = [make_flow(with_credentials) for _ in range(n)]
        start = time.perf_counter()
        for f in flows:
            call_hook(addon, f)
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def hook_costs(n: int = 5000, profile: bool = False) -> dict[str, float]:
    from mitmproxy.test import taddons

    logging.getLogger("mitm407").setLevel(logging.WARNING)  # the 407 path logs each refusal: not timed here
    addon, make_flow = make_addon()
    with taddons.context(addon) as tctx:
        tctx.options.hop_name = "mitm407"
        costs = {
            "basic_cached_us": time_hook(addon, make_flow, True, n),
            "challenge_407_us": time_hook(addon, make_flow, False, n),
        }
        if profile:
            flows = [make_flow(True) for _ in range(n)]
            profiler = cProfile.Profile()
            profiler.enable()
            for f in flows:
                call_hook(addon, f)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(20)
    return costs


def main() -> int:
    costs = hook_costs(profile="--profile" in sys.argv)
    for name, value in costs.items():
        print(f"{name}: {value:.1f} us per request")
    print(f"(measured in process on {measure.machine()['cpu']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
