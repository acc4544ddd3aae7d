"""A tiny JSON-over-HTTP server on 127.0.0.1 for the control API, in mitmproxy's event loop.

Standard library only (``asyncio.start_server``): one request per connection,
``Connection: close``, bodies capped, an optional bearer token compared in
constant time. Routing is a table from (method, path) to a handler; the
handlers (``proxy/control.py``) hold the logic. Everything a client sends is
hostile, even on loopback: a malformed request gets a 400 JSON error and never
a traceback on the wire.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger("mitm407.control")

MAX_HEAD = 16 * 1024
MAX_BODY = 4 * 1024 * 1024  # a scenario YAML: big htpasswd files belong in files, not in PUT bodies
TIMEOUT = 10.0
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 413: "Content Too Large", 500: "Internal Server Error"}


@dataclass(frozen=True, slots=True)
class ControlRequest:
    method: str
    path: str
    query: Mapping[str, str]
    body: bytes


Handler = Callable[[ControlRequest], Awaitable[tuple[int, Any]] | tuple[int, Any]]


class ControlError(Exception):
    """A request the handler refuses: (status, message)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Request line and headers of an HTTP/1.1 request head; ControlError(400) on anything odd."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise ControlError(400, "request head is not ASCII") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ControlError(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ControlError(400, "malformed header line")
        headers[name.lower()] = value.strip()
    return parts[0], parts[1], headers


def authorized(headers: Mapping[str, str], token: str) -> bool:
    if not token:
        return True
    given = headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


@dataclass(frozen=True, slots=True)
class RawBody:
    """A handler's answer that is not JSON (the CA certificate)."""

    content: bytes
    content_type: str


def encode_response(status: int, payload: Any) -> bytes:
    if isinstance(payload, RawBody):
        body, content_type = payload.content, payload.content_type
    else:
        body = (json.dumps(payload, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
        content_type = "application/json"
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
    )
    return head.encode("ascii") + body


class ControlServer:
    """Serve ``routes`` on 127.0.0.1:``port`` until ``close``."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler], token: str = "") -> None:
        self.routes = routes
        self.token = token
        self.server: asyncio.Server | None = None

    async def start(self, port: int, host: str = "127.0.0.1") -> None:
        self.server = await asyncio.start_server(self.serve, host, port, limit=MAX_HEAD + 2)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await asyncio.wait_for(self.answer(reader), TIMEOUT)
        except TimeoutError:
            status, payload = 400, {"error": "request not received in time"}
        try:
            writer.write(encode_response(status, payload))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def answer(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return 400, {"error": "incomplete or oversized request head"}
        try:
            method, target, headers = parse_head(head[:-4])
            if not authorized(headers, self.token):
                raise ControlError(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)")
            length_text = headers.get("content-length", "0")
            if not length_text.isdigit():
                raise ControlError(400, "bad Content-Length")
            length = int(length_text)
            if length > MAX_BODY:
                raise ControlError(413, f"body over {MAX_BODY} bytes")
            body = await reader.readexactly(length) if length else b""
            url = urlsplit(target)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            handler = self.routes.get((method, url.path))
            if handler is None:
                allowed = sorted(m for m, p in self.routes if p == url.path)
                if allowed:
                    raise ControlError(405, f"{method} not allowed on {url.path}", allowed=allowed)
                raise ControlError(404, f"no such endpoint: {url.path}", endpoints=sorted({p for _, p in self.routes}))
            result = handler(ControlRequest(method, url.path, query, body))
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
            return result
        except ControlError as e:
            return e.status, {"error": str(e), **e.extra}
        except (asyncio.IncompleteReadError, ConnectionError):
            return 400, {"error": "body shorter than Content-Length"}
        except Exception:  # a handler bug must not kill the server or leak a traceback to the client
            logger.exception("mitm407: control API request failed")
            return 500, {"error": "internal error; see the proxy log"}
