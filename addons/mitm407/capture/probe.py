"""Ask a proxy one raw question and keep its whole answer, including whether it hung up.

mitmproxy in upstream mode answers the client's CONNECT itself and, when the
upstream refuses its own CONNECT with 407, reports only a 502 (FACTS.md). To
see the upstream's real refusal, capture sends the client's CONNECT to the
upstream itself on a fresh connection: head, body and close behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class RawAnswer:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    closed: bool  # the proxy closed the connection after the answer


class ProbeError(OSError):
    """The proxy could not be reached or its answer is not HTTP/1."""


def connect_request(authority: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def parse_head(head: bytes) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProbeError(f"not an HTTP response: {lines[0][:80]!r}")
    headers = tuple((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def exchange(
    host: str,
    port: int,
    request: bytes,
    timeout: float = 10.0,
    linger: float = 0.3,
    tls: ssl.SSLContext | None = None,
) -> tuple[RawAnswer, asyncio.StreamReader, asyncio.StreamWriter]:
    """Send ``request``, read one answer; the open connection is returned for reuse (or closing)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=tls), timeout)
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        raise ProbeError(f"no answer from proxy {host}:{port}: {e or type(e).__name__}") from None
    status, reason, headers = parse_head(head[:-4])
    body, closed = await _read_body(reader, headers, status, timeout)
    if not closed and linger > 0 and not 200 <= status < 300:
        with contextlib.suppress(asyncio.TimeoutError, OSError):
            closed = await asyncio.wait_for(reader.read(1), linger) == b""
    return RawAnswer(status, reason, headers, body, closed), reader, writer


async def _read_body(
    reader: asyncio.StreamReader, headers: tuple[tuple[str, str], ...], status: int, timeout: float
) -> tuple[bytes, bool]:
    values = {k.lower(): v for k, v in headers}
    if 200 <= status < 300 or status in (204, 304):
        return b"", False
    try:
        if "chunked" in values.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int((await asyncio.wait_for(reader.readline(), timeout)).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
                    return body, False
                body += await asyncio.wait_for(reader.readexactly(size + 2), timeout)
                body = body[:-2]
        if "content-length" in values:
            return await asyncio.wait_for(reader.readexactly(int(values["content-length"])), timeout), False
        return await asyncio.wait_for(reader.read(), timeout), True  # delimited by close
    except (TimeoutError, ValueError, OSError, asyncio.IncompleteReadError) as e:
        raise ProbeError(f"incomplete answer: {e or type(e).__name__}") from None
