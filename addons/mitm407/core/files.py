"""Reading a file a scenario names, without trusting what the path points at.

A scenario's ``file:`` secret, htpasswd/htdigest path (and the scenario
itself) may name a FIFO, a device (``/dev/zero``, a terminal) or a huge file.
``open()`` on a FIFO waits for a writer forever and ``read()`` of
``/dev/zero`` never ends: either would hang ``check`` or start-up, or a
reload's worker thread for good. So the file is opened without blocking,
must be a regular file, and is read up to a size cap.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB
CHUNK = MIB


class UnreadableFile(Exception):
    """Why a file could not be used; ``reason`` is short and holds no content of the file."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def shown(path: str | os.PathLike[str]) -> str:
    """A path as it can be printed: quoted and escaped when it holds control characters,
    a NUL or a lone surrogate (a terminal must not interpret a file name)."""
    text = str(path)
    return text if text.isprintable() else ascii(text)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def size_text(size: int) -> str:
    """A byte count the way the limits are documented: 64 KiB, 1 MiB."""
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    if size >= KIB and size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} bytes"


def read_regular_file(path: str | os.PathLike[str], limit: int) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes; raises ``UnreadableFile``."""
    data = read_regular_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnreadableFile(f"not UTF-8 text (byte {e.start + 1})") from None


def read_regular_bytes(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; raises ``UnreadableFile``.

    ``O_NONBLOCK`` makes opening a FIFO return at once (then refused by
    ``fstat``); ``O_NOCTTY`` keeps a terminal from becoming ours. The read
    stops at ``limit + 1`` bytes, so a file growing meanwhile is refused
    rather than read without end.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(Path(path), flags)
    except FileNotFoundError:
        raise UnreadableFile("no such file") from None
    except OSError as e:
        raise UnreadableFile(e.strerror or type(e).__name__) from None
    except ValueError:  # a NUL or a lone surrogate in the name
        raise UnreadableFile("not a valid file name") from None
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise UnreadableFile(e.strerror or type(e).__name__) from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnreadableFile(f"{_kind(st.st_mode)}, not a regular file")
    if st.st_size > limit:
        os.close(fd)
        raise UnreadableFile(f"{st.st_size} bytes, larger than the limit of {size_text(limit)}")
    with os.fdopen(fd, "rb") as f:
        chunks: list[bytes] = []
        total = 0
        while total <= limit:  # in chunks: read(limit + 1) would allocate the whole limit up front
            chunk = f.read(min(CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    if total > limit:
        raise UnreadableFile(f"larger than the limit of {size_text(limit)}")
    return b"".join(chunks)
