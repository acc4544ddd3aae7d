"""Small readings of a mitmproxy flow that the hop log and the auth addon both need.

Here (below the auth addon) so that the hop log never imports ``proxy``.
"""

from __future__ import annotations

from mitmproxy import connection, http
from mitmproxy.proxy import mode_specs


def is_proxy_mode(client: connection.Client) -> bool:
    """Regular/upstream mode answers 407; reverse and others act as the server (401)."""
    return isinstance(client.proxy_mode, (mode_specs.RegularMode, mode_specs.UpstreamMode))


def destination_host(flow: http.HTTPFlow, is_proxy: bool | None = None) -> str:
    """The host the request goes to.

    To a proxy that is the request-target's host, which mitmproxy connects to; the
    Host header could name another (a bypassed host, say) and costs a parse per request.
    Acting as the server (reverse mode), the Host header says which site was asked for.
    """
    if is_proxy is None:  # (the auth addon passes it: it has it already)
        is_proxy = is_proxy_mode(flow.client_conn)
    return flow.request.host if is_proxy else flow.request.pretty_host
