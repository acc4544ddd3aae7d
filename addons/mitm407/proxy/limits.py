"""Bounds on what one client can make this proxy hold before any hook sees a request.

mitmproxy 11 and 12 buffer an HTTP/1 request head without limit until its
blank line arrives (``Http1Server.read_headers`` in
``mitmproxy/proxy/layers/http/_http1.py`` carries ``FIXME: protect against
header size DoS``): 20 connections streaming header bytes for 8 s took the
process to 2-4 GB, and no addon hook runs before the head is complete. Two
bounds, both cheap (docs/hostile-input.md):

- ``request_head_limit`` (bytes, default 256 KiB): a request head that has not
  ended within that many bytes is answered ``431 Request Header Fields Too
  Large`` and the connection closed. Real proxies cut lower (Squid 64 KB, nginx
  4 x 8 KB); this one is a test tool and lets the scenario, not the limit,
  answer a 64 KB ``Proxy-Authorization`` (tests send such), while memory stays
  bounded (the limit plus one 64 KiB read per connection). mitmproxy has no hook or option for this, so it wraps
  ``Http1Server.read_headers``, the one private mitmproxy API this module uses
  (``install_head_limit``; tests/test_e2e_hostile_input.py checks it on both
  majors). The check is one ``len()`` per received chunk while a head is read.
- ``client_connection_limit`` (default 0: off): open connections per client
  IP address; more are closed in ``client_connected`` (public API) before a
  byte is read. It caps file descriptors and concurrent heads per address, not
  bytes; off by default because local test clients all share 127.0.0.1.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Generator
from typing import Any

from mitmproxy import connection, ctx, exceptions

logger = logging.getLogger("mitm407.limits")

DEFAULT_HEAD_LIMIT = 256 * 1024
_END_OF_HEAD = re.compile(rb"\n\r?\n")  # what h11's ReceiveBuffer.maybe_extract_lines looks for
_MARK = "__mitm407_head_limit__"


class _Settings:
    """What the wrapped ``read_headers`` reads: set by ``Limits.configure``, one value per process."""

    head_limit = DEFAULT_HEAD_LIMIT


def head_is_too_long(buffered: bytes, limit: int) -> bool:
    """No end of head within the first ``limit`` bytes of what is buffered."""
    return limit > 0 and len(buffered) > limit and _END_OF_HEAD.search(buffered, 0, limit + 2) is None


def _bounded(original: Callable[..., Generator[Any, Any, None]], make_error_response: Callable[..., bytes]) -> Any:
    from mitmproxy.proxy import commands, events

    def read_headers(self: Any, event: Any) -> Generator[Any, Any, None]:
        limit = _Settings.head_limit
        over = limit and isinstance(event, events.DataReceived) and len(self.buf) > limit
        if over and head_is_too_long(bytes(self.buf), limit):  # a copy of at most limit + one read
            peer = getattr(self.conn, "peername", None)
            logger.warning("mitm407: request head from %s over %d bytes: answered 431, connection closed",
                           f"{peer[0]}:{peer[1]}" if peer else "?", limit)
            message = f"Request header fields too large (over {limit} bytes)"
            yield commands.SendData(self.conn, make_error_response(431, message))
            yield commands.CloseConnection(self.conn)
            self.state = self.done
            return
        yield from original(self, event)

    setattr(read_headers, _MARK, True)
    return read_headers


def install_head_limit() -> bool:
    """Wrap mitmproxy's HTTP/1 request-head reader once per process; False if its internals moved."""
    try:
        from mitm407.proxy.mitmproxy_compat import http1_server_layer

        server, make_error_response = http1_server_layer()
        original = server.read_headers
        server.done  # noqa: B018 -- the state the wrapper ends in must exist
    except (ImportError, AttributeError) as e:
        logger.warning("mitm407: cannot bound request heads with this mitmproxy (%s); only the connection limit "
                       "applies", e)
        return False
    if not getattr(original, _MARK, False):
        server.read_headers = _bounded(original, make_error_response)
    return True


class Limits:
    """Options and hooks of the two bounds; add it before the auth addon (``entry.all_addons``)."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()  # client IP -> connections counted
        self.counted: set[str] = set()  # ids of counted connections
        self.warned: set[str] = set()  # IPs whose refusal was logged (until they drop below the limit)

    def load(self, loader: Any) -> None:
        loader.add_option(
            "request_head_limit", int, DEFAULT_HEAD_LIMIT,
            "mitm407: bytes of an HTTP/1 request head (request line and headers) before this proxy answers 431 "
            "and closes the connection (0: unlimited, mitmproxy's own behaviour).",
        )
        loader.add_option(
            "client_connection_limit", int, 0,
            "mitm407: open connections per client IP address; more are closed at once (0: no limit).",
        )
        install_head_limit()

    def configure(self, updated: set[str]) -> None:
        for name in ("request_head_limit", "client_connection_limit"):
            if name in updated and getattr(ctx.options, name) < 0:
                raise exceptions.OptionsError(f"{name} must be 0 (no limit) or more, got {getattr(ctx.options, name)}")
        if "request_head_limit" in updated:
            _Settings.head_limit = ctx.options.request_head_limit

    def client_connected(self, client: connection.Client) -> None:
        limit = ctx.options.client_connection_limit
        ip = client.peername[0] if client.peername else ""
        if limit and self.open[ip] >= limit:
            client.error = f"more than {limit} connections from {ip}"  # mitmproxy closes it before reading
            if ip not in self.warned:
                self.warned.add(ip)
                logger.warning("mitm407: %s has %d connections open (client_connection_limit): closing new ones",
                               ip, limit)
            return
        self.open[ip] += 1
        self.counted.add(client.id)

    def client_disconnected(self, client: connection.Client) -> None:
        if client.id not in self.counted:
            return
        self.counted.discard(client.id)
        ip = client.peername[0] if client.peername else ""
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]
        if self.open[ip] < (ctx.options.client_connection_limit or 1):
            self.warned.discard(ip)
