"""The one place that imports mitmproxy internals: functions outside its documented addon API.

mitmproxy documents its addon API (hooks, ``ctx``, ``http``, ``connection``,
``options``) but not ``mitmproxy.net.http.http1`` (its HTTP/1 head parser)
nor ``mitmproxy.addons.upstream_auth`` (how ``upstream_auth`` becomes a
header). Using them keeps this proxy byte-for-byte in step with mitmproxy's own
parsing and upstream credentials, and they may move in any release. Every user
imports them from here, tests/test_compat.py checks each on the installed
mitmproxy (11 and 12) with a tiny round trip and checks that no other module
imports them: a release that moves one fails there, and this is the only file to fix.

``offer_hook`` is the one undocumented *behaviour* relied on: mitmproxy looks a
hook up on the addon object at every event (``getattr``), so a hook set as an
instance attribute is called and one removed is not; and it awaits whatever a
hook returns if that is awaitable, so a sync hook may return a coroutine (a
delay, a slow check) and cost no coroutine on the common path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mitmproxy.addons.upstream_auth import parse_upstream_auth
from mitmproxy.net.http.http1 import connection_close, read_response_head

__all__ = [
    "connection_close",
    "http1_server_layer",
    "neutralise_builtin_proxyauth",
    "offer_hook",
    "parse_upstream_auth",
    "read_response_head",
]


def http1_server_layer() -> tuple[type, Callable[[int, str], bytes]]:
    """mitmproxy's HTTP/1 server layer class and its error-response builder (``proxy/limits.py`` wraps the
    layer's request-head reader, which mitmproxy leaves unbounded). ImportError/AttributeError if they moved."""
    from mitmproxy.proxy.layers.http import _http1

    return _http1.Http1Server, _http1.make_error_response


def offer_hook(addon: Any, name: str, hook: Callable[..., object] | None) -> None:
    """Offer mitmproxy the hook ``name`` on ``addon`` (``hook``), or stop offering it (None)."""
    if hook is None:
        addon.__dict__.pop(name, None)
    else:
        setattr(addon, name, hook)


def neutralise_builtin_proxyauth(master: Any) -> bool:
    """Make mitmproxy's built-in ProxyAuth addon inert: it validates nothing and stores no password.

    mitmproxy's SOCKS5 server offers username/password only while the option
    ``proxyauth`` is set; mitm407 sets it to a sentinel (``proxy/socks5.py``)
    and checks the password itself. The built-in addon would otherwise parse
    that option, answer HTTP requests 401/407 itself, and keep accepted
    passwords in ``flow.metadata["proxyauth"]`` (a secret in saved flows).
    Its ``validator`` attribute (not documented) is what every one of its hooks
    tests first. Returns False when the addon is absent or has no such attribute.
    """
    builtin = master.addons.get("proxyauth")
    if builtin is None or not hasattr(builtin, "validator"):
        return False
    builtin.validator = None
    return True
