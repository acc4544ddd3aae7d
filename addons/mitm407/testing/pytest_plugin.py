"""pytest plugin: the ``mitm407_proxy`` fixture, a factory of real authenticating proxies.

    def test_client_retries_after_expiry(mitm407_proxy):
        proxy = mitm407_proxy("expired-credentials")   # shipped name, a path, or a dict scenario
        requests.get(url, proxies={"http": proxy.url_for("alice")})
        assert proxy.hops()[-1]["auth"]["result"] == "ok"

    def test_client_renews_a_stale_nonce(mitm407_proxy):
        proxy = mitm407_proxy("digest", control=True)  # and its control API: expire(), lock(user), ...
        ...                                            # the client gets a nonce
        proxy.advance(301)                             # the proxy's clock jumps: that nonce is stale now

Installed with the package (entry point ``pytest11``). Every proxy started by a
test is stopped at its teardown, pass or fail; on failure the proxy's output is
attached to the test report ("mitm407 proxy log" section).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the proxy module (scenario loader, YAML) loads with the first proxy, not with pytest
    from mitm407.testing.proxy import Proxy

PROXIES_KEY = pytest.StashKey["list[Proxy]"]()


@pytest.fixture
def mitm407_proxy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Proxy]]:
    """Start ``mitm407_proxy(scenario, options={...}, control=False)``: a real mitmdump on a free 127.0.0.1 port.

    ``control=True``: its control API too, so that ``proxy.expire()``, ``proxy.advance(61)``, ... work.
    """
    started: list[Proxy] = []
    request.node.stash[PROXIES_KEY] = started

    def factory(
        scenario: str | Path | Mapping[str, Any] = "default",
        options: Mapping[str, str] | None = None,
        control: bool = False,
    ) -> Proxy:
        from mitm407.testing.proxy import start_proxy

        proxy = start_proxy(scenario, tmp_path / f"mitm407-{len(started)}", options, control)
        started.append(proxy)
        return proxy

    try:
        yield factory
    finally:
        for proxy in started:
            proxy.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failed test, attach each proxy's output to the report."""
    report = yield
    if report.failed:
        for index, proxy in enumerate(item.stash.get(PROXIES_KEY, [])):
            report.sections.append((f"mitm407 proxy log #{index} ({proxy.url})", proxy.log[-20000:]))
    return report
