"""The hop log: one JSON line per flow saying which hop answered it, and why.

A mitmproxy addon that works alone (``addons/hoplog.py``) or beside the
authenticating ``Addon`` (``addons/proxyauth.py``), in either load order: it
reads what ``Addon`` decided from flow metadata at the end of the flow, adds
``Via``/``Proxy-Status`` so chains of mitm407 instances can be traced, marks
flows for mitmweb, and records credential leaks. The decisions are in
``hops.py`` (pure); this module only gathers facts from flows and writes.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import re
import sys
import weakref
from collections.abc import MutableMapping, Sequence
from typing import IO, Any

from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.proxy import mode_specs

from mitm407.core.flowmeta import META_ANSWERED, META_FAULT, META_RULE, META_SHAPED, auth_log
from mitm407.core.results import AuthResult
from mitm407.hoplog import headerfields
from mitm407.hoplog.attribution import (
    Attribution,
    HopFacts,
    Kind,
    ProxyStatusEntry,
    ViaEntry,
    attribute_hop,
    build_proxy_status,
    build_via,
    describe_credentials,
    parse_proxy_status,
    parse_via,
    redact_query,
)
from mitm407.hoplog.flows import destination_host
from mitm407.hoplog.hopname import add_hop_name_option
from mitm407.hoplog.recordparts import fault_entries, iso_time
from mitm407.hoplog.socks5 import handshake_record
from mitm407.hoplog.summary import HopSummary, format_text
from mitm407.wire.authparams import AuthParamError, parse_challenges
from mitm407.wire.terminal import printable

logger = logging.getLogger("mitm407.hoplog")

META_RECEIVED = "mitm407.hop.received"  # (Via, Proxy-Status) as the next hop sent them
META_FINDINGS = "mitm407.hop.findings"  # list of finding dicts (redacted)
META_LOGGED = "mitm407.hop.logged"  # the line for this flow was written
META_HEADERS = "mitm407.hop.headers"  # our Via/Proxy-Status were added to the response
META_RELAYED = "mitm407.relayed"  # an upstream proxy's refusal of CONNECT, relayed as is (connectrelay.py)

MARK_ANSWERED = ":no_entry:"
MARK_UPSTREAM_407 = ":arrow_up:"
MARK_LEAK = ":rotating_light:"

_TAGS = re.compile(r"<[^>]*>")
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one, not one per line


def upstream_address(client: connection.Client) -> str | None:
    mode = client.proxy_mode
    if isinstance(mode, mode_specs.UpstreamMode):
        return f"{mode.address[0]}:{mode.address[1]}"
    return None


def _ms(later: float | None, earlier: float | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round(max(later - earlier, 0.0) * 1000, 1)


def json_line(record: dict[str, Any]) -> bytes:
    """The record as one line of JSON in valid UTF-8.

    Header values and paths that were not UTF-8 reach us as lone surrogates
    (mitmproxy decodes with ``surrogateescape``): those lines are written with
    ``\\udcXX`` escapes instead, which JSON readers accept.
    """
    try:
        return (_ENCODER.encode(record) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record, separators=(",", ":")) + "\n").encode("ascii")


def _field(name: bytes, value: str | None) -> tuple[bytes, bytes] | None:
    """A header field ready for ``headerfields.append``; None when the header is off."""
    return None if value is None else (name, value.encode("utf-8", "surrogateescape"))


def _via_and_proxy_status(headers: http.Headers) -> tuple[list[str], list[str]]:
    """Every ``Via`` and ``Proxy-Status`` value, in order."""
    via, proxy_status = headerfields.values_of(headers, (b"via", b"proxy-status"))
    return via, proxy_status


def offered_schemes(headers: http.Headers, status: int) -> list[str]:
    """The scheme names a 401/407 offered (Negotiate, Basic, ...): the exchange without its parameters.

    Upstream bytes are hostile: a challenge list that does not parse records what parsed before it,
    names are escaped and bounded, and at most 16 are kept.
    """
    name = b"proxy-authenticate" if status == 407 else b"www-authenticate"
    schemes: list[str] = []
    for value in headerfields.values(headers, name):
        try:
            found = parse_challenges(value)
        except AuthParamError:
            continue
        schemes += [printable(challenge.scheme, 64) for challenge in found]
    return schemes[:16]


def _server(headers: http.Headers) -> str:
    """``headers.get("Server", "")``: several lines folded with ", "."""
    return ", ".join(headerfields.values(headers, b"server"))


_CACHED_MAX = 2048  # characters of Via/Proxy-Status values worth caching the parse of


@functools.lru_cache(maxsize=256)
def _parsed_for_log(
    via: Sequence[str], proxy_status: Sequence[str]
) -> tuple[tuple[ViaEntry, ...], tuple[ProxyStatusEntry, ...]]:
    """The log's view of a response's Via/Proxy-Status values: the same few values on most flows."""
    return tuple(parse_via(via)), tuple(parse_proxy_status(proxy_status))


def _may_need_body_hint(response: http.Response) -> bool:
    """mitmproxy's own error page (5xx, ``Server: mitmproxy``): its body says what went wrong."""
    return response.status_code >= 500 and _server(response.headers).lower().startswith("mitmproxy")


def _add_comment(flow: http.HTTPFlow, mark: str, text: str) -> None:
    flow.marked = mark
    if text not in flow.comment:
        flow.comment = f"{flow.comment}\n{text}".strip()


class HopLog:
    """Attribute every flow to a hop; write it as one JSON line."""

    def __init__(self) -> None:
        self.out: IO[str] | IO[bytes] | None = None  # our file (bytes, unbuffered) or stdout (text)
        self._owns_out = False
        self._running = False
        self.summary = HopSummary()
        # The last records in memory, numbered from 1, for the control API's ``GET /hops?since=N``;
        # None (the default) keeps none and builds no record when no log file is open either.
        self.recent: collections.deque[tuple[int, dict[str, Any]]] | None = None
        self.sequence = 0
        # client connection -> id of its accepted CONNECT flow (the tunnel)
        self.tunnels: MutableMapping[connection.Client, str] = weakref.WeakKeyDictionary()
        # flow -> its Attribution, computed once when needed (not in flow.metadata: not serializable)
        self.attributions: MutableMapping[http.HTTPFlow, Attribution] = weakref.WeakKeyDictionary()
        # Option values read per flow, cached by ``configure`` (``ctx.options`` deep-copies every
        # value it returns): the defaults, until mitmproxy configures the addon.
        self.hop_name = "mitm407"
        self.via: str | None = build_via(self.hop_name)  # our Via value; None: hop_via off
        self.proxy_status: str | None = build_proxy_status(self.hop_name)  # plain member; None: off
        self.via_field, self.proxy_status_field = _field(b"Via", self.via), _field(b"Proxy-Status", self.proxy_status)
        self.query_values = False

    @property
    def recording(self) -> bool:
        """A record is wanted: a log file is open or the control API keeps recent records (one test for every hook)."""
        return self.out is not None or self.recent is not None

    # -- options -----------------------------------------------------------------
    def load(self, loader: Any) -> None:
        add_hop_name_option(loader)
        loader.add_option(
            "hoplog",
            str,
            "",
            """
            mitm407 hop log: a file to append one JSON line per flow to (which hop answered it,
            auth result, Via/Proxy-Status chain, timings, credential-leak findings); "-" for stdout;
            empty: off.
            """,
        )
        loader.add_option(
            "hop_via", bool, True, "Add 'Via: 1.1 <hop_name>' to forwarded requests and to responses."
        )
        loader.add_option(
            "hop_proxy_status",
            bool,
            True,
            "Add 'Proxy-Status: <hop_name>' (RFC 9209) to responses, with error= and details= on answers "
            "this proxy made.",
        )
        loader.add_option(
            "hoplog_query_values",
            bool,
            False,
            "Write query-string values to the hop log; off: names only, values REDACTED.",
        )

    def configure(self, updated: set[str]) -> None:
        self.cache_options(updated)
        try:
            self.open_log(updated)
        except exceptions.OptionsError as e:
            if self._running:
                raise  # mitmproxy rejects the change and keeps the old value
            logger.error("mitm407: %s", e)  # at start-up: a clean exit, no traceback

    def running(self) -> None:
        self._running = True

    def cache_options(self, updated: set[str]) -> None:
        """Precompute what every flow needs from the options: our Via value and plain Proxy-Status member."""
        if updated & {"hop_name", "hop_via", "hop_proxy_status"}:
            options = ctx.options
            self.hop_name = options.hop_name
            self.via = build_via(self.hop_name) if options.hop_via else None
            self.proxy_status = build_proxy_status(self.hop_name) if options.hop_proxy_status else None
            self.via_field = _field(b"Via", self.via)
            self.proxy_status_field = _field(b"Proxy-Status", self.proxy_status)
        if "hoplog_query_values" in updated:
            self.query_values = ctx.options.hoplog_query_values

    def open_log(self, updated: set[str]) -> None:
        if "hoplog" in updated:
            self.close()
            path = ctx.options.hoplog
            if path == "-":
                self.out = sys.stdout
            elif path:
                try:
                    # unbuffered, O_APPEND: a line is one write() system call, on disk at once (tail -f),
                    # whole even when two proxies append to the same file
                    self.out = open(path, "ab", buffering=0)  # noqa: SIM115 -- lives until done()
                except OSError as e:
                    raise exceptions.OptionsError(f"cannot open hop log {path}: {e.strerror}") from None
                self._owns_out = True

    def close(self) -> None:
        if self.out is not None and self._owns_out:
            self.out.close()
        self.out, self._owns_out = None, False

    def done(self) -> None:
        if self.out is not None and self.summary.flows:
            sys.stderr.write(format_text(self.summary.as_dict()))
            sys.stderr.flush()
        self.close()

    # -- hooks ---------------------------------------------------------------------
    def http_connect_upstream(self, flow: http.HTTPFlow) -> None:
        if self.via_field is not None:
            headerfields.append(flow.request.headers, self.via_field)

    def http_connected(self, flow: http.HTTPFlow) -> None:
        self.tunnels[flow.client_conn] = flow.id
        self.finish(flow)

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            self.add_response_headers(flow, answered_here=not flow.metadata.get(META_RELAYED))
        self.finish(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.is_replay:
            return
        self.check_leak(flow)
        if self.via_field is not None:
            headerfields.append(flow.request.headers, self.via_field)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.add_response_headers(flow, answered_here=bool(flow.metadata.get(META_ANSWERED)))

    def response(self, flow: http.HTTPFlow) -> None:
        self.add_response_headers(flow, answered_here=bool(flow.metadata.get(META_ANSWERED)))
        self.finish(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.finish(flow)

    # -- what we add ------------------------------------------------------------------
    def add_response_headers(self, flow: http.HTTPFlow, answered_here: bool) -> None:
        """Record what the next hop sent, then append our Via/Proxy-Status (once)."""
        response = flow.response
        if response is None or flow.metadata.get(META_HEADERS):
            return
        flow.metadata[META_HEADERS] = True
        # What the next hop sent, before ours is added: only attribution reads it, which runs for
        # answers of 400 and above and for the log line (raw values, parsed only then).
        if not answered_here and (self.recording or response.status_code >= 400):
            flow.metadata[META_RECEIVED] = _via_and_proxy_status(response.headers)
        if flow.request.method == "CONNECT" and 200 <= response.status_code < 300:
            return  # mitmproxy sends no headers on an established tunnel (Android emulators break)
        # Below 400 nothing depends on who answered: no error in Proxy-Status, no mark.
        attribution = self.attribution(flow) if response.status_code >= 400 else None
        # a scenario's response shape is the whole header block (list Via there if wanted)
        if not (answered_here and flow.metadata.get(META_SHAPED)):
            if self.via_field is not None:
                headerfields.append(response.headers, self.via_field)
            if self.proxy_status_field is not None:
                if attribution is not None and attribution.kind is Kind.THIS_PROXY and attribution.error_type:
                    member = build_proxy_status(self.hop_name, attribution.error_type, attribution.details)
                    response.headers.add("Proxy-Status", member)
                else:
                    headerfields.append(response.headers, self.proxy_status_field)
        if attribution is not None:
            self.mark(flow, attribution)

    def mark(self, flow: http.HTTPFlow, attribution: Attribution) -> None:
        """mitmweb: a mark and a comment on answers this proxy made and on upstream 407s."""
        status = flow.response.status_code if flow.response else None
        if attribution.kind is Kind.THIS_PROXY and status is not None and status >= 400:
            why = f": {attribution.details}" if attribution.details else ""
            _add_comment(flow, MARK_ANSWERED, f"{status} from {attribution.hop} (mitm407){why}")
        elif attribution.kind is Kind.UPSTREAM_PROXY and (status == 407 or attribution.upstream_status == 407):
            _add_comment(flow, MARK_UPSTREAM_407, f"407 from upstream proxy {attribution.hop}")

    def check_leak(self, flow: http.HTTPFlow) -> None:
        """Proxy-Authorization that would reach the origin: inside a tunnel, or left unstripped."""
        values = headerfields.values(flow.request.headers, b"proxy-authorization")
        if not values:
            return
        tunnel = self.tunnels.get(flow.client_conn)
        if tunnel is not None:
            kind, where = "proxy-authorization-in-tunnel", "inside a CONNECT tunnel, sent to the origin"
        elif upstream_address(flow.client_conn) is None and flow.request.method != "CONNECT":
            kind, where = "proxy-authorization-to-origin", "forwarded to the origin (not stripped by a proxy)"
        else:
            return  # upstream mode: the header is for the upstream proxy (upstream_auth)
        findings = flow.metadata.setdefault(META_FINDINGS, [])
        for value in values:
            scheme, user = describe_credentials(value)
            findings.append({"kind": kind, "header": "Proxy-Authorization", "scheme": scheme, "user": user})
            who = f", user '{user}'" if user else ""
            text = f"credential leak: Proxy-Authorization ({scheme}{who}) {where}"
            _add_comment(flow, MARK_LEAK, text)
            logger.warning("mitm407: %s: %s %s", text, flow.request.method, destination_host(flow))

    # -- the record ---------------------------------------------------------------------
    def attribution(self, flow: http.HTTPFlow) -> Attribution:
        """Who answered the flow, computed at most once per flow once nothing it depends on can change.

        It is kept in flow metadata unless an error may still arrive or the body of a mitmproxy
        error page (its hint) is not read yet: then the next call computes it again.
        """
        cached = self.attributions.get(flow)
        if cached is not None and flow.error is None:
            return cached
        facts = self.facts(flow)
        attribution = attribute_hop(facts)
        response = flow.response
        if flow.error is None and response is not None and (
            response.raw_content is not None or not _may_need_body_hint(response)
        ):
            self.attributions[flow] = attribution
        return attribution

    def facts(self, flow: http.HTTPFlow) -> HopFacts:
        response = flow.response
        answered = bool(flow.metadata.get(META_ANSWERED)) or (
            flow.request.method == "CONNECT" and not flow.metadata.get(META_RELAYED)
        )
        received = flow.metadata.get(META_RECEIVED)
        via: tuple[ViaEntry, ...] = tuple(parse_via(received[0])) if received and received[0] else ()
        proxy_status: tuple[ProxyStatusEntry, ...] = (
            tuple(parse_proxy_status(received[1])) if received and received[1] else ()
        )
        auth = auth_log(flow.metadata)
        upstream = upstream_address(flow.client_conn)
        server = _server(response.headers) if response is not None else ""
        error = flow.error.msg if flow.error else None
        body_hint = ""
        if response is not None and _may_need_body_hint(response):
            body_hint = " ".join(_TAGS.sub(" ", response.get_text(strict=False) or "").split())[:300]
            if answered and not flow.metadata.get(META_ANSWERED):
                error = body_hint  # mitmproxy's own CONNECT error (eager connection failed)
        return HopFacts(
            hop_name=self.hop_name,
            answered_here=answered,
            status=response.status_code if response is not None else None,
            origin=f"{flow.request.host}:{flow.request.port}",
            upstream=upstream,
            via=via,
            proxy_status=proxy_status,
            server=server,
            error=error,
            answer_reason=auth.get("reason") if auth is not None and flow.metadata.get(META_ANSWERED) else None,
            body_hint=body_hint,
            upstream_tunnel=upstream is not None
            and (flow.request.scheme == "https" or flow.client_conn in self.tunnels),
        )

    def keep_recent(self, size: int) -> None:
        """Keep the last ``size`` records in memory (the control API reads them with ``records_since``)."""
        self.recent = collections.deque(self.recent or (), maxlen=size)

    def records_since(self, sequence: int) -> list[tuple[int, dict[str, Any]]]:
        """(number, record) of every kept record numbered above ``sequence``, oldest first."""
        return [(n, record) for n, record in (self.recent or ()) if n > sequence]

    def finish(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(META_LOGGED):
            return
        flow.metadata[META_LOGGED] = True
        if not self.recording and flow.response is not None:
            return  # no line to write and nothing to mark: skip the attribution (hot path, log off)
        attribution = self.attribution(flow)
        if flow.response is None:
            self.mark(flow, attribution)
        if not self.recording:
            return
        self.write(self.record(flow, attribution))

    def socks5_handshake(
        self, client: connection.Client, auth: AuthResult, valid: bool, faults: list[dict[str, str]],
        destination: tuple[str, int] | None = None, rule: str | None = None,
    ) -> None:
        """A SOCKS5 username/password check, or a refused SOCKS CONNECT (``proxy/socks5.py``): no flow exists."""
        if not self.recording:
            return
        peer = client.peername
        address = f"{peer[0]}:{peer[1]}" if peer else None
        self.write(handshake_record(self.hop_name, address, client.id, auth, valid, faults, None, destination, rule))

    def write(self, record: dict[str, Any]) -> None:
        """Keep the record for the control API (if it asks) and append it to the hop log (if one is open)."""
        if self.recent is not None:
            self.sequence += 1
            self.recent.append((self.sequence, record))
        if self.out is None:
            return
        self.summary.add(record)
        line = json_line(record)
        try:
            if self._owns_out:
                written = self.out.write(line)  # type: ignore[arg-type]
                while written is not None and written < len(line):  # a short write (rare on files)
                    line = line[written:]
                    written = self.out.write(line)  # type: ignore[arg-type]
            else:  # stdout: flushed per line, like the file
                self.out.write(line.decode("utf-8"))  # type: ignore[arg-type]
                self.out.flush()
        except (OSError, ValueError) as e:
            logger.error("mitm407: cannot write the hop log: %s", e)
            self.close()

    def record(self, flow: http.HTTPFlow, attribution: Attribution) -> dict[str, Any]:
        request, response = flow.request, flow.response
        is_connect = request.method == "CONNECT"
        auth = auth_log(flow.metadata)
        peer = flow.client_conn.peername
        hop = self.hop_name
        if response is not None:
            via_values, proxy_status_values = _via_and_proxy_status(response.headers)
            if sum(map(len, via_values)) + sum(map(len, proxy_status_values)) <= _CACHED_MAX:
                via_entries, proxy_status_entries = _parsed_for_log(tuple(via_values), tuple(proxy_status_values))
            else:  # a long (hostile?) chain: not kept in the cache
                via_entries, proxy_status_entries = _parsed_for_log.__wrapped__(via_values, proxy_status_values)
            via = [entry.as_log() for entry in via_entries]
            proxy_status = [entry.as_log() for entry in proxy_status_entries]
        else:
            via, proxy_status = [], []
            if attribution.kind is not Kind.NONE:  # the member mitmproxy's error page cannot carry
                ours = build_proxy_status(hop, attribution.error_type, None, attribution.next_hop)
                proxy_status = [entry.as_log() for entry in parse_proxy_status([ours])]
        end = (response.timestamp_end if response else None) or (flow.error.timestamp if flow.error else None)
        server = flow.server_conn
        error = None
        if attribution.error_type and (attribution.kind is not Kind.THIS_PROXY or response is None or (
            response.status_code >= 400
        )):
            error = {
                "type": attribution.error_type,
                "next_hop": attribution.next_hop,
                "message": (attribution.details or "")[:300] or None,
            }
        status = response.status_code if response is not None else (502 if attribution.kind is not Kind.NONE else None)
        record = {
            "v": 1,
            "time": iso_time(request.timestamp_start),
            "hop": hop,
            "flow_id": flow.id,
            "client": {
                "address": f"{peer[0]}:{peer[1]}" if peer else None,
                "connection_id": flow.client_conn.id,
            },
            "tunnel_id": None if is_connect else self.tunnels.get(flow.client_conn),
            "method": request.method,
            "scheme": "" if is_connect else request.scheme,
            "host": destination_host(flow),
            "port": request.port,
            "path": "" if is_connect else redact_query(request.path, self.query_values),
            "status": status,
            "answered_by": attribution.as_log(),
            "upstream_proxy": upstream_address(flow.client_conn),
            "upstream_status": attribution.upstream_status,
            "error": error,
            "auth": auth,
            "rule": flow.metadata.get(META_RULE),
            "via": via,
            "proxy_status": proxy_status,
            "timings": {
                "total_ms": _ms(end, request.timestamp_start),
                "connect_ms": _ms(server.timestamp_tcp_setup, server.timestamp_start),
                "tls_ms": _ms(server.timestamp_tls_setup, server.timestamp_tcp_setup),
                "response_ms": _ms(response.timestamp_start if response else None, request.timestamp_end),
            },
            "findings": list(flow.metadata.get(META_FINDINGS, [])),
            "faults": fault_entries(flow.metadata.get(META_FAULT, ())),
        }
        if status in (401, 407) and response is not None:
            record["challenges"] = offered_schemes(response.headers, status)
        return record
