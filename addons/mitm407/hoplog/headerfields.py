"""Reading, removing and appending header fields in one pass over mitmproxy's raw ``fields``.

Why not ``Headers.get_all``/``del``/``add``: ``get_all`` converts the name and
lower-cases every field through two layers of generic code, and ``del`` scans
three times (``in``, then ``get_all`` again, then the delete); on the proxy's
hot path those scans were most of mitm407's per-request cost. mitmproxy's
``Headers.fields`` is a public tuple of ``(name, value)`` bytes that its own
methods replace as a whole; these helpers do the same, decode values exactly
as ``Headers`` does (UTF-8, ``surrogateescape``) and take lower-case ``bytes``
names, so callers precompute them once.
"""

from __future__ import annotations

from mitmproxy import http


def values(headers: http.Headers, name: bytes) -> list[str]:
    """Every value of the header ``name`` (lower-case bytes), in order: ``headers.get_all(name)``."""
    return [value.decode("utf-8", "surrogateescape") for key, value in headers.fields if key.lower() == name]


def values_of(headers: http.Headers, names: tuple[bytes, ...]) -> list[list[str]]:
    """The values of each header of ``names`` (lower-case bytes), in one pass over the fields."""
    out: list[list[str]] = [[] for _ in names]
    for key, value in headers.fields:
        lower = key.lower()
        if lower in names:
            out[names.index(lower)].append(value.decode("utf-8", "surrogateescape"))
    return out


def has(headers: http.Headers, name: bytes) -> bool:
    """Whether the header ``name`` (lower-case bytes) is present."""
    return any(key.lower() == name for key, _ in headers.fields)


def remove(headers: http.Headers, name: bytes) -> None:
    """Delete every field called ``name`` (lower-case bytes); nothing if there is none."""
    fields = headers.fields
    kept = tuple(field for field in fields if field[0].lower() != name)
    if len(kept) != len(fields):
        headers.fields = kept


def append(headers: http.Headers, *fields: tuple[bytes, bytes]) -> None:
    """Add fields at the end, as ``headers.add`` does, from values already encoded."""
    headers.fields = (*headers.fields, *fields)
