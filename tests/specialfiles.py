"""Paths that are not regular files, for the tests that a loader refuses them at once."""

from __future__ import annotations

import os
from pathlib import Path

KINDS = ("fifo", "dev-zero", "directory")


def special_file(folder: Path, kind: str) -> tuple[str, str]:
    """Make (or name) a file of ``kind`` in ``folder``: (its path as a scenario writes it, the refusal reason).

    A FIFO would be waited on for ever and /dev/zero read for ever: a loader that
    tries either hangs, so callers run with a pytest timeout.
    """
    if kind == "fifo":
        os.mkfifo(folder / "special")
        return "special", "a FIFO (named pipe), not a regular file"
    if kind == "dev-zero":
        return "/dev/zero", "a character device, not a regular file"
    (folder / "special").mkdir()
    return "special", "a directory, not a regular file"
