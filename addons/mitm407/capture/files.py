"""Observations from saved traffic: mitmproxy flow files and HAR.

Flow files are read with mitmproxy's own ``io.FlowReader``; HAR is JSON
(``log.entries[].request/response``). Both go through ``make_observation``,
which drops every credential, so nothing secret survives into the scenario.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import urlsplit

from mitm407.capture.observe import Observation, make_observation

UPSTREAM_REFUSED = "refused HTTP CONNECT request: "


class CaptureFileError(ValueError):
    """The file is neither a mitmproxy flow file nor HAR."""


def observations_from_file(path: Path, keep_usernames: bool) -> list[Observation]:
    if path.suffix.lower() == ".har":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CaptureFileError(f"{path}: not a HAR file: {e}") from None
        return observations_from_har(data, keep_usernames)
    return observations_from_flows(path, keep_usernames)


def observations_from_flows(path: Path, keep_usernames: bool) -> list[Observation]:
    from mitmproxy import exceptions, http, io

    from mitm407.capture.addon import observation_from_flow

    out = []
    try:
        with open(path, "rb") as f:
            for flow in io.FlowReader(f).stream():
                if not isinstance(flow, http.HTTPFlow):
                    continue
                if flow.request.method != "CONNECT" and flow.request.first_line_format != "absolute":
                    continue  # inside a tunnel: answered by the origin, not the proxy
                if flow.response is not None and flow.response.status_code == 502 and UPSTREAM_REFUSED in (
                    flow.response.get_text(strict=False) or ""
                ):
                    continue  # mitmproxy's 502 for an upstream CONNECT refusal: the real answer is not in the file
                observation = observation_from_flow(flow, keep_usernames)
                if observation is not None:
                    out.append(observation)
    except (OSError, exceptions.FlowReadException) as e:
        raise CaptureFileError(f"{path}: not a mitmproxy flow file: {e}") from None
    return out


def observations_from_har(data: object, keep_usernames: bool) -> list[Observation]:
    try:
        entries = data["log"]["entries"]  # type: ignore[index]
    except (TypeError, KeyError):
        raise CaptureFileError("not a HAR file: no log.entries") from None
    out = []
    for entry in entries:
        request, response = entry.get("request") or {}, entry.get("response") or {}
        status = int(response.get("status") or 0)
        if not status:  # HAR writes status 0 for requests without an answer
            continue
        method = str(request.get("method", "GET")).upper()
        url = str(request.get("url", ""))
        parts = urlsplit(url if "://" in url else f"//{url}")
        if parts.scheme == "https" and method != "CONNECT":
            continue  # inside a tunnel: answered by the origin, not the proxy
        refused = status in (401, 403, 407)
        content = response.get("content") or {}
        text = content.get("text") or ""
        body = base64.b64decode(text) if content.get("encoding") == "base64" else text.encode("utf-8")
        out.append(
            make_observation(
                method=method,
                url=url,
                host=parts.hostname or "",
                port=parts.port or (443 if parts.scheme == "https" or method == "CONNECT" else 80),
                request_headers=_pairs(request.get("headers")),
                status=status,
                reason=str(response.get("statusText") or ""),
                response_headers=_pairs(response.get("headers")) if refused else [],
                body=body if refused else b"",
                closed=None,
                keep_usernames=keep_usernames,
            )
        )
    return out


def _pairs(headers: object) -> list[tuple[str, str]]:
    if not isinstance(headers, list):
        return []
    return [(str(h.get("name", "")), str(h.get("value", ""))) for h in headers if isinstance(h, dict)]
