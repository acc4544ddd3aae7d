"""An NTLM/Negotiate client on a raw proxy connection (pyspnego tokens), for tests, the bench and the soak.

One place for it: ``tests/test_e2e_ntlm.py``, ``bench/run.py``'s handshake-rate row
and ``bench/soak.py`` all drive the same three legs (type 1 -> 407 with the type 2
-> type 3 -> 200) on one kept-alive connection.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable

import spnego

from procs import read_response

Response = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body


class RawClient:
    """One client connection to the proxy; ``send`` returns (status, headers, body)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, head: str) -> Response:
        """``head`` is a request without its final empty line."""
        self.sock.sendall(head.encode() + b"\r\n")
        raw = read_response(self.file)
        if not raw:
            raise ConnectionError("proxy closed the connection")
        top, _, body = raw.partition(b"\r\n\r\n")
        lines = top.decode().split("\r\n")
        headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
        return int(lines[0].split()[1]), headers, body

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def token_in(headers: list[tuple[str, str]], scheme: str) -> bytes:
    """The handshake token of a CONTINUE 407: its only ``Proxy-Authenticate`` must be ``SCHEME <token>``."""
    values = [v for k, v in headers if k.lower() == "proxy-authenticate"]
    if len(values) != 1 or not values[0].startswith(scheme + " "):
        raise ValueError(f"expected one '{scheme} <token>' challenge, got {values}")
    return base64.b64decode(values[0].split(" ", 1)[1])


def client(user: str, password: str, protocol: str = "ntlm") -> spnego.ContextProxy:
    return spnego.client(user, password, hostname="proxy", service="HTTP", protocol=protocol)


def handshake(
    conn: RawClient, head: Callable[[str], str], user: str, password: str, protocol: str = "ntlm"
) -> tuple[Response, Response]:
    """Type 1, then the type 3 answering the 407's type 2, on ``conn``; the two responses.

    ``head(authorization)`` builds each leg's request, so a caller can give every leg its own path.
    """
    scheme = "NTLM" if protocol == "ntlm" else "Negotiate"
    context = client(user, password, protocol)
    first = conn.send(head(f"{scheme} {b64(context.step())}"))
    if first[0] != 407:
        return first, first
    second = conn.send(head(f"{scheme} {b64(context.step(token_in(first[1], scheme)))}"))
    return first, second
