"""Test-only mitmproxy script: appends each flow's fault metadata to $FAULT_PROBE as JSON lines.

Loaded after addons/proxyauth.py so tests can read exactly what the addon
recorded under ``mitm407.fault`` (the hop log of issue 4 reads the same key).
"""

from __future__ import annotations

import json
import os


def _write(flow) -> None:
    path = os.environ.get("FAULT_PROBE")
    if not path:
        return
    record = {
        "method": flow.request.method,
        "path": flow.request.path,
        "status": flow.response.status_code if flow.response else None,
        "error": flow.error.msg if flow.error else None,
        "fault": flow.metadata.get("mitm407.fault"),
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def response(flow) -> None:
    _write(flow)


def error(flow) -> None:
    _write(flow)


def http_connect_error(flow) -> None:
    _write(flow)
