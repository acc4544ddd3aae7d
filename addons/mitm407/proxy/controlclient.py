"""A client of the control API (``proxy/control.py``): the one place its requests are built and sent.

Two callers: ``mitm407 ctl`` (a shell, another language's CI), which prints the
raw answer, and the pytest fixture's methods (``proxy.expire()``,
``proxy.advance(61)``, ...), which want the parsed answer or one clear error.
Standard library only (urllib), so that the pytest plugin stays light, and never
through a proxy from the environment: ``HTTP_PROXY`` would send the request to
the proxy under test, or elsewhere.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

TOKEN_ENV = "MITM407_CONTROL_TOKEN"
TIMEOUT = 30.0

# action -> (HTTP method, path, query parameters it takes)
ACTIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "status": ("GET", "/status", ()),
    "scenario": ("PUT", "/scenario", ()),
    "expire": ("POST", "/expire", ()),
    "rotate": ("POST", "/rotate", ()),
    "lock": ("POST", "/lock", ("user",)),
    "unlock": ("POST", "/unlock", ("user",)),
    "reset": ("POST", "/reset", ()),
    "advance": ("POST", "/clock", ()),
    "hops": ("GET", "/hops", ("since",)),
}

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through HTTP_PROXY


class ControlAPIError(Exception):
    """The control API refused a request (4xx/5xx) or could not be reached.

    ``str()`` is the API's own one-line message (with a scenario's
    ``file:line:col`` problems on following lines); ``status`` is None when
    nothing answered; ``answer`` is the parsed JSON answer, if any.
    """

    def __init__(self, message: str, status: int | None = None, answer: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.answer = answer


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface (the control API's default, tokenless)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ControlEndpoint:
    """Where a proxy's control API answers, and the bearer token it wants ("" for none)."""

    port: int
    host: str = "127.0.0.1"
    token: str = field(default="", repr=False)

    @property
    def address(self) -> str:
        """``host:port``, an IPv6 literal in brackets (RFC 3986 §3.2.2)."""
        try:
            bracketed = ipaddress.ip_address(self.host).version == 6
        except ValueError:
            bracketed = False
        return f"[{self.host}]:{self.port}" if bracketed else f"{self.host}:{self.port}"


def json_body(data: Any) -> tuple[bytes, str]:
    return json.dumps(data).encode(), "application/json"


def build_request(
    endpoint: ControlEndpoint,
    action: str,
    query: Mapping[str, str] | None = None,
    body: tuple[bytes, str] | None = None,
) -> urllib.request.Request:
    """The request for ``action`` (a key of ``ACTIONS``); ``body`` is (bytes, content type)."""
    method, path, params = ACTIONS[action]
    query = dict(query or {})
    if unknown := set(query) - set(params):
        raise ValueError(f"{action} takes no {', '.join(sorted(unknown))} parameter")
    url = f"http://{endpoint.address}{path}" + (f"?{urlencode(query)}" if query else "")
    request = urllib.request.Request(url, data=body[0] if body else None, method=method)
    if body:
        request.add_header("Content-Type", body[1])
    if endpoint.token:
        request.add_header("Authorization", f"Bearer {endpoint.token}")
    return request


def send(request: urllib.request.Request, timeout: float = TIMEOUT) -> tuple[int, bytes]:
    """(status, body) of any answer, 4xx and 5xx included; ``ControlAPIError`` (one line) if none came."""
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        where = urlsplit(request.full_url).netloc
        raise ControlAPIError(f"cannot reach the control API at {where}: {reason}") from None


def error_message(request: urllib.request.Request, status: int, answer: Any, body: bytes) -> str:
    """``POST /lock: 404 no such user in the scenario``, and an invalid scenario's problems below it."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        message = answer["error"]
    else:  # not this API's JSON (another server on the port?): its first line, shortened
        message = (body.decode("utf-8", "replace").strip().splitlines() or ["(empty answer)"])[0][:200]
    path = urlsplit(request.full_url).path
    lines = [f"{request.get_method()} {path}: {status} {message}"]
    for problem in answer.get("problems", []) if isinstance(answer, dict) else []:
        where = f"{problem.get('file')}:{problem.get('line')}:{problem.get('col')}"
        hint = f" ({problem['hint']})" if problem.get("hint") else ""
        lines.append(f"  {where}: {problem.get('message')}{hint}")
    return "\n".join(lines)


def call(
    endpoint: ControlEndpoint,
    action: str,
    query: Mapping[str, str] | None = None,
    body: tuple[bytes, str] | None = None,
    timeout: float = TIMEOUT,
) -> Any:
    """The parsed JSON answer of a 2xx; ``ControlAPIError`` with the API's message otherwise."""
    request = build_request(endpoint, action, query, body)
    status, raw = send(request, timeout)
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not 200 <= status < 300 or answer is None:
        raise ControlAPIError(error_message(request, status, answer, raw), status, answer)
    return answer
