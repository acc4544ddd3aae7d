"""Read the principal names in a Kerberos keytab file (MIT format 0x0502/0x0501).

Why our own reader: MIT's ``gss_acquire_cred`` does not open the keytab until
the first token arrives, so a missing key (``principal: HTTP/proxy`` with a
keytab for ``HTTP/localhost``) would only show as a refused client. Reading
the names at scenario load lets ``check`` name the problem with
``file:line:col``. Only names are read; key bytes are skipped, never kept.
"""

from __future__ import annotations

import struct
from pathlib import Path

from mitm407.core.files import UnreadableFile, read_regular_bytes

MAX_KEYTAB = 1024 * 1024  # a keytab with thousands of keys is still far below this


class KeytabError(ValueError):
    """The file is not a keytab we can read; the message is safe to show."""


def keytab_principals(path: Path) -> tuple[str, ...]:
    """Every ``primary/instance@REALM`` with a key in the keytab, in file order, without repeats.

    Read like every file a scenario names (``core/files.py``): a FIFO or a device is refused at
    once instead of blocking ``check``, start-up or a reload for good.
    """
    if not path.exists():
        raise FileNotFoundError(str(path))
    try:
        data = read_regular_bytes(path, MAX_KEYTAB)
    except UnreadableFile as e:
        raise KeytabError(e.reason) from None
    return parse_keytab(data)


def parse_keytab(data: bytes) -> tuple[str, ...]:
    if len(data) < 2 or data[0] != 5 or data[1] not in (1, 2):
        raise KeytabError("not a Kerberos keytab (no 0x0501/0x0502 version header)")
    order = "<" if data[1] == 1 else ">"  # version 1 is host byte order (little-endian on x86), 2 big-endian
    names: list[str] = []
    pos = 2
    try:
        while pos + 4 <= len(data):
            (size,) = struct.unpack_from(">i", data, pos)
            pos += 4
            if size < 0:  # a hole left by a deleted entry
                pos += -size
                continue
            if size == 0:
                break
            entry = data[pos : pos + size]
            if len(entry) < size:
                raise KeytabError("truncated entry")
            names.append(_principal(entry, order, data[1]))
            pos += size
    except (struct.error, UnicodeDecodeError):
        raise KeytabError("damaged entry") from None
    return tuple(dict.fromkeys(names))


def _principal(entry: bytes, order: str, version: int) -> str:
    (count,) = struct.unpack_from(order + "H", entry, 0)
    if version == 1:
        count -= 1  # version 1 counts the realm as a component
    pos = 2
    parts: list[str] = []
    for _ in range(count + 1):  # the realm first, then the components
        (length,) = struct.unpack_from(order + "H", entry, pos)
        pos += 2
        raw = entry[pos : pos + length]
        if len(raw) < length:
            raise KeytabError("truncated principal name")
        parts.append(raw.decode("utf-8"))
        pos += length
    realm, components = parts[0], parts[1:]
    return "/".join(components) + "@" + realm


def matches(principal: str, wanted: str) -> bool:
    """``HTTP/localhost`` matches ``HTTP/localhost@ANY``; with a realm the whole name must match.

    Case matters, as it does to the KDC: ``http/localhost`` is another principal.
    """
    if "@" in wanted:
        return principal == wanted
    return principal.rpartition("@")[0] == wanted
