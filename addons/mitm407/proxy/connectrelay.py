"""Relay an upstream proxy's refusal of CONNECT to the client, as a real proxy chain does.

In ``--mode upstream:`` mitmproxy answers the client's CONNECT with 200
itself and only later sends its own CONNECT upstream; when that one gets a
407 the client sees a 502 inside the tunnel. With ``hop_relay_connect_refusal``
this addon asks the upstream proxy first (one extra CONNECT per tunnel, with
the same ``upstream_auth`` credentials mitmproxy would send) and, if it
refuses, answers the client's CONNECT with that very response (status,
headers, body), so the client sees the upstream's 407 and its challenge.
It runs after ``Addon`` (``entry.all_addons``), so only accepted CONNECTs
are probed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from mitmproxy import ctx, http

from mitm407.hoplog.addon import META_RELAYED, upstream_address
from mitm407.hoplog.attribution import build_via
from mitm407.proxy.mitmproxy_compat import parse_upstream_auth, read_response_head

logger = logging.getLogger("mitm407.connectrelay")

PROBE_TIMEOUT = 10.0
MAX_BODY = 64 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length", "te", "trailer"}


def build_connect_request(authority: str, proxy_authorization: str | None, via: str | None) -> bytes:
    """The CONNECT mitmproxy would send upstream, plus our Via."""
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy_authorization:
        lines.append(f"Proxy-Authorization: {proxy_authorization}")
    if via:
        lines.append(f"Via: {via}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


async def probe_connect(host: str, port: int, request: bytes, timeout: float = PROBE_TIMEOUT) -> http.Response | None:
    """Send ``request`` to the proxy at host:port; its response if it is not 2xx, else None."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.split(b"\r\n")[:-2]
        response = read_response_head(lines)
        if 200 <= response.status_code < 300:
            return None
        length = int(response.headers.get("Content-Length", "0") or 0)
        body = await asyncio.wait_for(reader.readexactly(length), timeout) if 0 < length <= MAX_BODY else b""
    except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None  # mitmproxy's own CONNECT will meet (and report) the same problem
    finally:
        if writer is not None:
            writer.close()
    headers = [(k, v) for k, v in response.headers.fields if k.decode("latin-1").lower() not in HOP_BY_HOP]
    relayed = http.Response.make(response.status_code, body, headers)
    relayed.reason = response.reason
    return relayed


class ConnectRelay:
    def load(self, loader: Any) -> None:
        loader.add_option(
            "hop_relay_connect_refusal",
            bool,
            False,
            "In --mode upstream: ask the upstream proxy before accepting a CONNECT and relay its refusal "
            "(e.g. its 407 with its challenge) to the client, as a real proxy chain does; off: mitmproxy "
            "answers 200 and the client later gets a 502 inside the tunnel.",
        )

    def http_connect(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Sync when there is nothing to ask (mitmproxy awaits what a hook returns)."""
        if flow.response is not None or not ctx.options.hop_relay_connect_refusal:
            return None
        mode = flow.client_conn.proxy_mode
        if upstream_address(flow.client_conn) is None or getattr(mode, "scheme", "http") != "http":
            return None
        return self.relay_refusal(flow, mode)

    async def relay_refusal(self, flow: http.HTTPFlow, mode: Any) -> None:
        """Probe the upstream proxy with our own CONNECT; answer the client with its refusal, if any."""
        auth = ctx.options.upstream_auth
        request = build_connect_request(
            flow.request.authority or f"{flow.request.host}:{flow.request.port}",
            parse_upstream_auth(auth).decode() if auth else None,
            build_via(ctx.options.hop_name) if ctx.options.hop_via else None,
        )
        response = await probe_connect(mode.address[0], mode.address[1], request)
        if response is not None:
            flow.response = response
            flow.metadata[META_RELAYED] = True
            logger.info(
                "mitm407: upstream proxy %s refused CONNECT %s with %d; relayed to the client",
                upstream_address(flow.client_conn), flow.request.authority, response.status_code,
            )
