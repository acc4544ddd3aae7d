"""Observations from saved traffic: mitmproxy flow files and HAR.

Flow files are read with mitmproxy's own ``io.FlowReader``; HAR is JSON
(``log.entries[].request/response``). Both go through ``make_observation``,
which drops every credential, so nothing secret survives into the scenario.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from urllib.parse import urlsplit

from mitm407.capture.observe import Observation, make_observation
from mitm407.wire.terminal import escape_controls

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
    """Each HAR entry's answer; a malformed entry stops the capture with one line naming it."""
    try:
        entries = data["log"]["entries"]  # type: ignore[index]
    except (TypeError, KeyError):
        raise CaptureFileError("not a HAR file: no log.entries") from None
    if not isinstance(entries, list):
        raise CaptureFileError("not a HAR file: log.entries is not a list")
    out = []
    for index, entry in enumerate(entries):
        try:
            observation = _har_observation(entry, keep_usernames)
        except (TypeError, ValueError, AttributeError, binascii.Error) as e:  # a hand-edited or hostile file
            where = f"HAR entry {index} (log.entries[{index}])"
            raise CaptureFileError(f"{where}: {escape_controls(str(e), 200)}") from None
        if observation is not None:
            out.append(observation)
    return out


def _har_observation(entry: object, keep_usernames: bool) -> Observation | None:
    """One entry as an Observation; None for entries a proxy did not answer. Raises ValueError on junk."""
    if not isinstance(entry, dict):
        raise ValueError("the entry is not an object")
    request, response = entry.get("request") or {}, entry.get("response") or {}
    if not isinstance(request, dict) or not isinstance(response, dict):
        raise ValueError("'request' and 'response' must be objects")
    raw_status = response.get("status") or 0
    if isinstance(raw_status, bool) or not isinstance(raw_status, int | str) or not str(raw_status).isdigit():
        raise ValueError(f"response.status {escape_controls(repr(raw_status), 40)} is not an HTTP status code")
    status = int(raw_status)
    if not status:  # HAR writes status 0 for requests without an answer
        return None
    if not 100 <= status <= 599:
        raise ValueError(f"response.status {status} is not an HTTP status code (100-599)")
    method = str(request.get("method", "GET")).upper()
    url = str(request.get("url", ""))
    parts = urlsplit(url if "://" in url else f"//{url}")
    try:
        port = parts.port  # raises ValueError for "port out of range" and non-numbers
    except ValueError:
        raise ValueError(f"request.url {escape_controls(url, 200)!r} has an invalid port") from None
    if parts.scheme == "https" and method != "CONNECT":
        return None  # inside a tunnel: answered by the origin, not the proxy
    refused = status in (401, 403, 407)
    content = response.get("content") or {}
    if not isinstance(content, dict):
        raise ValueError("response.content must be an object")
    text = content.get("text") or ""
    if not isinstance(text, str):
        raise ValueError("response.content.text must be a string")
    body = base64.b64decode(text, validate=True) if content.get("encoding") == "base64" else text.encode("utf-8")
    return make_observation(
        method=method,
        url=url,
        host=parts.hostname or "",
        port=port or (443 if parts.scheme == "https" or method == "CONNECT" else 80),
        request_headers=_pairs(request.get("headers")),
        status=status,
        reason=str(response.get("statusText") or ""),
        response_headers=_pairs(response.get("headers")) if refused else [],
        body=body if refused else b"",
        closed=None,
        keep_usernames=keep_usernames,
    )


def _pairs(headers: object) -> list[tuple[str, str]]:
    if not isinstance(headers, list):
        return []
    return [(str(h.get("name", "")), str(h.get("value", ""))) for h in headers if isinstance(h, dict)]
