"""The hop-log line of a SOCKS5 handshake: no flow exists yet, so the line is built from the connection.

mitmproxy makes a flow only once the SOCKS connection carries HTTP; a refused
username/password ends the connection before that. The line has every key of
an HTTP line (``schema.json``), with ``method: "SOCKS5"``, no destination
(the client names it only after authenticating) and no status: a SOCKS server
answers in bytes, not HTTP. A refusal is ``error.type: "http_request_denied"``
(RFC 9209's nearest), its reason in ``auth.reason``.
"""

from __future__ import annotations

import time
from typing import Any

from mitm407.core.results import AuthResult


def handshake_record(
    hop: str, address: str | None, connection_id: str, auth: AuthResult, valid: bool, faults: list[dict[str, str]],
    now: float | None = None,
) -> dict[str, Any]:
    stamp = time.time() if now is None else now
    return {
        "v": 1,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}Z",
        "hop": hop,
        "flow_id": f"socks5-{connection_id}",
        "client": {"address": address, "connection_id": connection_id},
        "tunnel_id": None,
        "method": "SOCKS5",
        "scheme": "",
        "host": "",
        "port": 0,
        "path": "",
        "status": None,
        "answered_by": {"kind": "this-proxy", "hop": hop},
        "upstream_proxy": None,
        "upstream_status": None,
        "error": None if valid else {
            "type": "http_request_denied", "next_hop": None, "message": "SOCKS5 username/password refused",
        },
        "auth": auth.as_log(),
        "rule": None,
        "via": [],
        "proxy_status": [],
        "timings": {"total_ms": None, "connect_ms": None, "tls_ms": None, "response_ms": None},
        "findings": [],
        "faults": [{"name": f["name"], "reason": f["reason"]} for f in faults],
    }
