"""Serve the scenario's PAC file at ``/proxy.pac`` and ``/wpad.dat`` on the proxy's own address.

A client fetches its PAC file before it knows any credentials, so the fetch is
answered without authentication. Only requests *sent to this proxy itself*
are answered: mitmproxy (11 and 12) hands ``requestheaders`` an origin-form
request with host and port taken from the Host header, so the request is
for us when that port is the one the client connected to and the host is a
loopback name or the address it connected to (mitmproxy's proxyserver makes
the same self-connect check). Every other request, including other paths on
the proxy's own address, gets the usual treatment from the auth addon.

This addon runs before the auth ``Addon`` (``entry.all_addons``): a flow
answered here carries a response, which the auth addon leaves alone.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable

from mitmproxy import http

from mitm407.core.flowmeta import META_ANSWERED, META_FAULT
from mitm407.hoplog.flows import is_proxy_mode
from mitm407.scenario.load import Scenario
from mitm407.scenario.pac import DEAD_PROXY, PAC_CONTENT_TYPE, PAC_PATHS, UNREACHABLE, pac_script, proxy_address

logger = logging.getLogger("mitm407.pac")

_PATHS = tuple(p.encode() for p in PAC_PATHS)
_LOOPBACK_NAMES = ("localhost", "localhost.")


def is_own_address(host: str, port: int, sockname: tuple[str, int] | None) -> bool:
    """Whether ``host:port`` (from the request) names the socket the client is connected to."""
    if not sockname or port != sockname[1]:
        return False
    host = host.lower().strip("[]")
    if host in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.is_loopback:
        return True
    own = ipaddress.ip_address(str(sockname[0]).split("%")[0])
    if isinstance(own, ipaddress.IPv6Address) and own.ipv4_mapped:
        own = own.ipv4_mapped
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address == own


class Pac:
    """Answer PAC fetches sent to the proxy itself; ``scenario`` gives the scenario in force (reloads included)."""

    def __init__(self, scenario: Callable[[], Scenario | None]) -> None:
        self.scenario = scenario
        self._closed_port: socket.socket | None = None  # 'dead_proxy': bound, never listening

    def done(self) -> None:
        if self._closed_port is not None:
            self._closed_port.close()
            self._closed_port = None

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        # cheap tests first: this hook sees every request
        if flow.response is not None or request.data.method != b"GET":
            return
        if request.data.path.split(b"?", 1)[0] not in _PATHS or flow.is_replay:
            return
        if not is_proxy_mode(flow.client_conn) or not is_own_address(
            request.host, request.port, flow.client_conn.sockname
        ):
            return
        scenario = self.scenario()
        if scenario is None:
            return  # the auth addon answers 503 (no valid scenario)
        try:
            self.answer(flow, scenario)
        except Exception:  # fail closed: an answer from this proxy, never a forwarded request
            logger.exception("mitm407: cannot serve the PAC file")
            flow.response = http.Response.make(500, b"mitm407: cannot serve the PAC file; see the proxy log\n")
            flow.metadata[META_ANSWERED] = True

    def answer(self, flow: http.HTTPFlow, scenario: Scenario) -> None:
        config = scenario.pac
        request = flow.request
        flow.metadata[META_ANSWERED] = True
        where = f"{request.host}:{request.port}{request.data.path.split(b'?', 1)[0].decode()}"
        if config.fault == UNREACHABLE:
            what = "connection closed" if config.close else f"{config.status}"
            self.fired(flow, UNREACHABLE, f"the PAC file is unreachable ({what})")
            flow.response = http.Response.make(config.status, b"no PAC file here (fault unreachable)\n",
                                               {"Content-Type": "text/plain; charset=utf-8"})
            if config.close:
                flow.kill()  # the response set above keeps the auth addon away; the kill drops it unsent
            logger.info("mitm407: GET %s -> %s: PAC fault unreachable", where, what)
            return
        if config.text is not None:
            script, source = config.text, "verbatim from the scenario"
        else:
            proxy = "PROXY " + proxy_address(request.host, request.port)
            if config.fault == DEAD_PROXY:
                dead = "PROXY " + (config.proxy or proxy_address(request.host, self.closed_port(request.host)))
                self.fired(flow, DEAD_PROXY, f"the PAC names a proxy nobody answers at ({dead})")
                proxy = f"{dead}; {proxy}" if config.fallback else dead
            script, source = pac_script(scenario.rules, proxy, scenario.name), "generated from the rules"
        flow.response = http.Response.make(
            200, script.encode("utf-8"), {"Content-Type": PAC_CONTENT_TYPE, "Cache-Control": "no-store"}
        )
        logger.info("mitm407: GET %s -> 200: PAC file (%s)", where, source)

    @staticmethod
    def fired(flow: http.HTTPFlow, name: str, reason: str) -> None:
        flow.metadata.setdefault(META_FAULT, []).append({"name": f"pac {name}", "reason": reason})

    def closed_port(self, host: str) -> int:
        """A port nothing listens on while this proxy runs: bound here and never listened on (refused)."""
        if self._closed_port is None:
            try:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind(("::", 0))
            except OSError:  # no IPv6 here
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("0.0.0.0", 0))
            self._closed_port = sock
        return int(self._closed_port.getsockname()[1])
