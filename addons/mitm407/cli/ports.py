"""Fixed ports on the command line (``demo --proxy-port``, ``chain --hop-port``): parsed and checked early.

A teacher announces the ports before class; when one is taken, say so before
any process starts, instead of a mitmdump log tail later.
"""

from __future__ import annotations

import argparse
import errno
import socket


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return value


def port_problem(port: int | None) -> str | None:
    """Why 127.0.0.1:PORT cannot be used, or None (checked before any process starts)."""
    if port is None:
        return None
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return f"port {port} is in use; choose another one"
            return f"cannot listen on 127.0.0.1:{port}: {e.strerror}"
    return None
