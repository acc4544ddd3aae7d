"""The mitmproxy behaviour ``proxy/compat.py`` relies on, checked against the installed mitmproxy (11 and 12).

mitmproxy's addon manager must (1) find a hook set as an instance attribute and
stop calling it once removed, and (2) await what a sync hook returns when that
is awaitable. If a release changes either, this fails before any proxy does.
"""

from __future__ import annotations

import asyncio

from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import taddons, tflow

from mitm407.proxy.compat import offer_hook


class Bare:
    """An addon with no hook of its own."""


def test_offered_hooks_are_called_and_what_they_return_is_awaited():
    addon, ran = Bare(), []

    async def later() -> None:
        ran.append("awaited")

    offer_hook(addon, "request", lambda flow: ran.append("called") or later())
    with taddons.context(addon) as tctx:

        async def invoke() -> None:
            await tctx.master.addons.invoke_addon(addon, HttpRequestHook(tflow.tflow()))

        asyncio.run(invoke())
        assert ran == ["called", "awaited"]
        offer_hook(addon, "request", None)
        asyncio.run(invoke())
        assert ran == ["called", "awaited"]  # withdrawn: not called again
