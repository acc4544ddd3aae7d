"""Capture addon: record how the upstream proxy authenticates, write a replay scenario.

    mitmdump --mode upstream:http://PROXY:PORT -s addons/capture.py --set capture_output=corp.yaml

Thin glue: each answer becomes an ``Observation`` (``observe.py``, secrets
removed there) and the scenario text comes from ``infer.py``. Plain-HTTP
answers are read from the flows. A CONNECT is answered by mitmproxy itself in
upstream mode (a refusal upstream would reach the client as a 502), so the
addon first sends the client's CONNECT, with the client's own credentials, to
the upstream on a connection of its own: a refusal is recorded and relayed to
the client as is (a real chain would do that), an acceptance lets mitmproxy
open its tunnel with the same credentials (``http_connect_upstream``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import ssl
import weakref
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from mitmproxy import connection, ctx, http
from mitmproxy.proxy import mode_specs

from mitm407.capture.infer import CaptureError, infer_scenario
from mitm407.capture.observe import Observation, make_observation
from mitm407.capture.probe import ProbeError, connect_request, exchange
from mitm407.proxy.mitmproxy_compat import connection_close
from mitm407.wire.terminal import escape_controls

logger = logging.getLogger("mitm407.capture")


def header_pairs(headers: http.Headers) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.items(multi=True)]


def observation_from_flow(flow: http.HTTPFlow, keep_usernames: bool, closed: bool | None = None) -> Observation | None:
    """A flow's answer as an Observation (None without a response). Bodies only of refusals."""
    request, response = flow.request, flow.response
    if response is None:
        return None
    refused = response.status_code in (401, 403, 407)
    if closed is None:
        closed = connection_close(response.http_version, response.headers)
    return make_observation(
        method=request.method,
        url=request.url if request.method != "CONNECT" else request.authority,
        host=request.host,
        port=request.port,
        request_headers=header_pairs(request.headers),
        status=response.status_code,
        reason=response.reason,
        response_headers=header_pairs(response.headers) if refused else [],
        body=(response.get_content(strict=False) or b"") if refused else b"",
        closed=closed,
        keep_usernames=keep_usernames,
    )


class Capture:
    def __init__(self) -> None:
        self.observations: list[Observation] = []
        self.answered = 0
        self.started = datetime.datetime.now(datetime.UTC)
        self.upstream = ""
        self.clients = 0
        self.stopping = False
        # The client's CONNECT credentials, to repeat on mitmproxy's own CONNECT upstream. Memory only.
        self.tunnel_credentials: MutableMapping[connection.Client, list[str]] = weakref.WeakKeyDictionary()

    def load(self, loader: Any) -> None:
        loader.add_option(
            "capture_output", str, "captured.yaml", "mitm407 capture: the scenario file written (and rewritten)."
        )
        loader.add_option(
            "capture_requests", int, 0, "mitm407 capture: stop after this many answered requests (0: until Ctrl-C)."
        )
        loader.add_option(
            "capture_keep_usernames", bool, False, "mitm407 capture: keep user names (passwords are never kept)."
        )

    def running(self) -> None:
        self.started = datetime.datetime.now(datetime.UTC)
        modes = [mode_specs.ProxyMode.parse(m) for m in ctx.options.mode]
        upstream = [m for m in modes if isinstance(m, mode_specs.UpstreamMode)]
        if not upstream:
            logger.warning("mitm407 capture: not in upstream mode; run with --mode upstream:http://PROXY:PORT")
        else:
            self.upstream = upstream[0].data
            logger.info("mitm407 capture: recording the proxy at %s into %s", self.upstream, ctx.options.capture_output)

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        mode = flow.client_conn.proxy_mode
        if flow.response is not None or not isinstance(mode, mode_specs.UpstreamMode):
            return
        sent = flow.request.headers.get_all("Proxy-Authorization")
        request = connect_request(flow.request.authority, [("Proxy-Authorization", v) for v in sent])
        tls = None
        if mode.scheme == "https":  # an HTTPS proxy: verified unless mitmproxy's ssl_insecure says not
            tls = ssl.create_default_context()
            if ctx.options.ssl_insecure:
                tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        try:
            answer, _, writer = await exchange(*mode.address, request, tls=tls)
        except ProbeError as e:
            logger.warning("mitm407 capture: CONNECT probe to %s failed: %s", mode.data, escape_controls(str(e), 300))
            return
        writer.close()
        refused = not 200 <= answer.status < 300
        self.record(
            make_observation(
                method="CONNECT",
                url=flow.request.authority,
                host=flow.request.host,
                port=flow.request.port,
                request_headers=header_pairs(flow.request.headers),
                status=answer.status,
                reason=answer.reason,
                response_headers=answer.headers if refused else (),
                body=answer.body if refused else b"",
                closed=answer.closed,
                keep_usernames=ctx.options.capture_keep_usernames,
            )
        )
        if refused:  # the client sees the upstream's real refusal, not mitmproxy's 502
            raw_headers = [(k.encode("iso-8859-1"), v.encode("iso-8859-1")) for k, v in answer.headers]
            response = http.Response.make(answer.status, answer.body, raw_headers)
            response.reason = answer.reason
            if answer.closed:
                response.headers["Connection"] = "close"
            flow.response = response
        elif sent:
            self.tunnel_credentials[flow.client_conn] = sent

    def http_connect_upstream(self, flow: http.HTTPFlow) -> None:
        sent = self.tunnel_credentials.get(flow.client_conn)
        if sent and "Proxy-Authorization" not in flow.request.headers:
            flow.request.headers.set_all("Proxy-Authorization", sent)

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT" or flow.request.first_line_format != "absolute":
            return  # CONNECT is probed above; requests inside tunnels are answered by origins
        observation = observation_from_flow(flow, ctx.options.capture_keep_usernames)
        if observation is not None:
            self.record(observation)

    def record(self, observation: Observation) -> None:
        self.observations.append(observation)
        self.answered += 1
        logger.info(
            "mitm407 capture: %s %s -> %d%s",
            escape_controls(observation.method, 20),
            escape_controls(observation.url, 200),  # network text: no terminal escapes
            observation.status,
            f" (credentials: {escape_controls(observation.credentials, 20)})" if observation.credentials else "",
        )
        if observation.refused or observation.credentials:
            self.write()
        limit = ctx.options.capture_requests
        if limit and self.answered >= limit and not self.stopping:
            logger.info("mitm407 capture: %d answers recorded, stopping when the clients have gone", self.answered)
            self.stopping = True

    def client_connected(self, client: connection.Client) -> None:
        self.clients += 1

    def client_disconnected(self, client: connection.Client) -> None:
        self.clients -= 1
        if self.stopping and self.clients <= 0:
            # shutting down with a client still connected makes asyncio print a cancelled task
            asyncio.get_running_loop().call_soon(ctx.master.shutdown)

    def write(self, final: bool = False) -> bool:
        path = Path(ctx.options.capture_output)
        try:
            text = infer_scenario(
                self.observations,
                source=self.upstream or "an unknown upstream",
                captured_at=self.started.strftime("%Y-%m-%d %H:%M UTC"),
            )
        except CaptureError as e:
            if final:
                logger.error("mitm407 capture: %s", e)
            return False
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return True

    def done(self) -> None:
        if self.write(final=True):
            logger.info("mitm407 capture: wrote %s from %d answers", ctx.options.capture_output, len(self.observations))
