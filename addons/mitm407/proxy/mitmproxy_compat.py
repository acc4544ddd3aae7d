"""The one place that imports mitmproxy internals: functions outside its documented addon API.

mitmproxy documents its addon API (hooks, ``ctx``, ``http``, ``connection``,
``options``) but not ``mitmproxy.net.http.http1`` (its HTTP/1 head parser)
nor ``mitmproxy.addons.upstream_auth`` (how ``upstream_auth`` becomes a
header). Using them keeps this proxy byte-for-byte in step with mitmproxy's own
parsing and upstream credentials, and they may move in any release. Every user
imports them from here, tests/test_compat.py checks each on the installed
mitmproxy (11 and 12) with a tiny round trip and checks that no other module
imports them: a release that moves one fails there, and this is the only file to fix.
"""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy.addons.upstream_auth import parse_upstream_auth
from mitmproxy.net.http.http1 import connection_close, read_response_head

__all__ = ["connection_close", "http1_server_layer", "parse_upstream_auth", "read_response_head"]


def http1_server_layer() -> tuple[type, Callable[[int, str], bytes]]:
    """mitmproxy's HTTP/1 server layer class and its error-response builder (``proxy/limits.py`` wraps the
    layer's request-head reader, which mitmproxy leaves unbounded). ImportError/AttributeError if they moved."""
    from mitmproxy.proxy.layers.http import _http1

    return _http1.Http1Server, _http1.make_error_response
