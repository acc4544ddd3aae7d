"""Pieces of a hop-log record that HTTP lines (``addon.py``) and SOCKS lines (``socks5.py``) share.

One definition, so that both kinds of line print the same time for the same
moment and the same fault entries; no mitmproxy import (``socks5.py`` needs none).
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable, Mapping


def iso_time(timestamp: float | None) -> str | None:
    """``2026-11-23T14:02:03.456Z``: the date and time formatted once per second, not per line."""
    if timestamp is None:
        return None
    second = int(timestamp // 1)
    micros = round((timestamp - second) * 1_000_000)  # as datetime rounds: the fraction, half to even
    if micros == 1_000_000:
        second, micros = second + 1, 0
    return f"{_iso_second(second)}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> str:
    return datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def fault_entries(faults: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """The ``faults`` of a record: name and reason of each fault that fired, nothing else it carries."""
    return [{"name": f["name"], "reason": f["reason"]} for f in faults]
