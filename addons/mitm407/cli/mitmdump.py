"""Find mitmdump and the packaged entry scripts, for commands that start it (run, capture)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def packaged_script(name: str) -> str:
    """A ``-s`` script shipped inside the package (works installed and from a checkout)."""
    return str(Path(__file__).resolve().parent.parent / name)


def mitmdump_executable() -> str:
    """The mitmdump beside this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mitmdump"
    if beside.exists():
        return str(beside)
    return shutil.which("mitmdump") or "mitmdump"


def mitmdump_command(script: str, args: list[str]) -> list[str]:
    return [mitmdump_executable(), "-s", script, *args]
