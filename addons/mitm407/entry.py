"""The addon lists the entry scripts install, kept in one place."""

from __future__ import annotations

from typing import Any


def all_addons() -> list[Any]:
    """What ``addons/proxyauth.py`` loads: challenge, validate (and log)."""
    from .addon import Addon

    return [Addon()]
