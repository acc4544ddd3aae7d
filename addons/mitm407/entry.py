"""The addon lists the entry scripts install, kept in one place."""

from __future__ import annotations

from typing import Any


def hoplog_addons() -> list[Any]:
    """The hop log, unless another entry script already installed it.

    ``-s addons/proxyauth.py -s addons/hoplog.py`` (either order) must give one
    hop log, not a clash of two addons called "hoplog" or doubled lines.
    """
    from mitmproxy import ctx

    from mitm407.hoplog.addon import HopLog

    master = getattr(ctx, "master", None)
    if master is not None and master.addons.get("hoplog") is not None:
        return []
    return [HopLog()]


def all_addons() -> list[Any]:
    """What ``addons/proxyauth.py`` loads: challenge, validate, relay CONNECT refusals, the hop log."""
    from mitm407.proxy.addon import Addon
    from mitm407.proxy.connectrelay import ConnectRelay

    return [Addon(), ConnectRelay(), *hoplog_addons()]
