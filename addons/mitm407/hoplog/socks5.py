"""The hop-log line of a SOCKS5 handshake: no flow exists yet, so the line is built from the connection.

mitmproxy makes a flow only once the SOCKS connection carries HTTP; a refused
username/password ends the connection before that. The line has every key of
an HTTP line (``schema.json``), with ``method: "SOCKS5"``, no destination
(the client names it only after authenticating) and no status: a SOCKS server
answers in bytes, not HTTP. A refusal is ``error.type: "http_request_denied"``
(RFC 9209's nearest), its reason in ``auth.reason``. A SOCKS CONNECT this
proxy refuses (a deny rule) has no flow either: its line has ``method:
"CONNECT"`` and the destination.
"""

from __future__ import annotations

import time
from typing import Any

from mitm407.core.results import AuthResult
from mitm407.hoplog.recordparts import fault_entries, iso_time


def handshake_record(
    hop: str, address: str | None, connection_id: str, auth: AuthResult, valid: bool, faults: list[dict[str, str]],
    now: float | None = None, destination: tuple[str, int] | None = None, rule: str | None = None,
) -> dict[str, Any]:
    """The handshake's line; with ``destination``: a SOCKS CONNECT this proxy refused (``method: "CONNECT"``)."""
    stamp = time.time() if now is None else now
    host, port = destination or ("", 0)
    return {
        "v": 1,
        "time": iso_time(stamp),
        "hop": hop,
        "flow_id": f"socks5-{connection_id}",
        "client": {"address": address, "connection_id": connection_id},
        "tunnel_id": None,
        "method": "SOCKS5" if destination is None else "CONNECT",
        "scheme": "",
        "host": host,
        "port": port,
        "path": "",
        "status": None,
        "answered_by": {"kind": "this-proxy", "hop": hop},
        "upstream_proxy": None,
        "upstream_status": None,
        "error": None if valid else {
            "type": "http_request_denied", "next_hop": None,
            "message": "SOCKS5 username/password refused" if destination is None else "SOCKS5 CONNECT refused",
        },
        "auth": auth.as_log(),
        "rule": rule,
        "via": [],
        "proxy_status": [],
        "timings": {"total_ms": None, "connect_ms": None, "tls_ms": None, "response_ms": None},
        "findings": [],
        "faults": fault_entries(faults),
    }
