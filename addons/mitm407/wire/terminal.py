"""Network text made safe for one line of a terminal, a log or a comment.

Paths, realms, user names, ``Via`` and ``Proxy-Status`` values come from
clients and upstream proxies. Printed raw, an escape sequence rewrites the
operator's terminal (colours, cursor moves, a fake "ok"), a ``\\r`` overwrites
the line, and U+2028/U+2029/U+0085 are line breaks to YAML and to some
editors. Every character that is not printable (``str.isprintable``: C0/C1
controls, DEL, line and paragraph separators, bidi overrides, lone surrogates
from undecodable bytes) is shown as its Python escape, so the reader sees that
it was there. Printable text, the usual case, is returned as is without a copy.
"""

from __future__ import annotations


def _escape(ch: str) -> str:
    """``"\\x1b"`` -> the four characters ``\\x1b``; lone surrogates included."""
    return ch.encode("unicode_escape", "backslashreplace").decode("ascii")


def escape_controls(text: str, limit: int | None = None) -> str:
    """``text`` with every non-printable character escaped.

    With ``limit``, the result is at most ``limit`` characters plus ``...`` when
    something was left out: a log line stays bounded whatever the input.
    """
    if text.isprintable() and (limit is None or len(text) <= limit):
        return text
    out: list[str] = []
    size = 0
    for ch in text if limit is None else text[:limit]:
        piece = ch if ch.isprintable() else _escape(ch)
        if limit is not None and size + len(piece) > limit:
            return "".join(out) + "..."
        out.append(piece)
        size += len(piece)
    return "".join(out) + ("..." if limit is not None and len(text) > limit else "")


def printable(text: str, limit: int = 64) -> str:
    """A user-supplied string made safe for one log line: ``escape_controls``, bounded."""
    return escape_controls(text, limit)
