"""The addon lists the entry scripts install, kept in one place.

Imports happen inside the functions so that a missing dependency becomes one
clear line and a refusing placeholder (``proxy/unavailable.py``), never a
traceback followed by an open proxy.
"""

from __future__ import annotations

from typing import Any


def hoplog_addons() -> list[Any]:
    """The hop log, unless another entry script already installed it.

    ``-s addons/proxyauth.py -s addons/hoplog.py`` (either order) must give one
    hop log, not a clash of two addons called "hoplog" or doubled lines. The hop
    log needs only mitmproxy: it works in any mitmproxy environment.
    """
    from mitmproxy import ctx

    from mitm407.hoplog.addon import HopLog

    master = getattr(ctx, "master", None)
    if master is not None and master.addons.get("hoplog") is not None:
        return []
    return [HopLog()]


def all_addons() -> list[Any]:
    """What ``addons/proxyauth.py`` loads: bounds on request heads, the PAC file and the login portal's pages
    (before the auth addon: neither needs credentials), challenge and validate, SOCKS5 username/password, relay
    CONNECT refusals, the control API, the hop log."""
    try:
        from mitm407.proxy.addon import Addon
        from mitm407.proxy.connectrelay import ConnectRelay
        from mitm407.proxy.control import Control
        from mitm407.proxy.limits import Limits
        from mitm407.proxy.pac import Pac
        from mitm407.proxy.portal import PortalPages
        from mitm407.proxy.socks5 import Socks5Auth
    except ImportError as e:
        from mitm407.proxy.unavailable import Unavailable, missing_dependency_message

        return [Unavailable(missing_dependency_message(e))]
    auth = Addon()
    hoplog = hoplog_addons()
    pages = [Pac(lambda: auth.scenario), PortalPages(auth)]
    return [Limits(), *pages, auth, Socks5Auth(auth), ConnectRelay(), Control(auth, find_hoplog), *hoplog]


def find_hoplog() -> Any:
    """The hop log addon of this process, whichever entry script installed it (None if none did)."""
    from mitmproxy import ctx

    master = getattr(ctx, "master", None)
    return master.addons.get("hoplog") if master is not None else None
