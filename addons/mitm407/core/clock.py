"""The proxy's clock: ``time.monotonic()`` plus an offset that tests move forward, never back.

Everything in the gate that ages reads one clock: Digest nonces, the Basic and
bcrypt caches, NTLM/Kerberos handshake tables, fault windows (expiry,
lockout, reauth), portal sessions. The control API's ``POST /clock`` advances
it so that a CI test sees a nonce go stale or a lockout end without sleeping
for the scenario's real durations.

Why forward only: nonces, cache entries and windows already issued carry
times of this clock. Moving it back would make them "from the future"
(a Digest nonce is then refused as forged) and would lengthen windows
already running; moving it forward ages them all consistently.

``now`` is called on every request, often several times: it stays a plain
method (measured with timeit: about 70 ns a call against 40 ns for
``time.monotonic`` alone).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

YEAR = 365 * 24 * 3600
MAX_ADVANCE = 10 * YEAR  # one step: far beyond any nonce, cache or window; keeps the arithmetic exact enough
MAX_OFFSET = 100 * YEAR  # in total: Digest nonce stamps (milliseconds) and float sums stay precise


def seconds_text(seconds: float) -> str:
    """90.0 -> "90", 1.5 -> "1.5": for log lines and command answers."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def parse_advance(value: object) -> float:
    """A step forward, from JSON or a caller: a finite number of seconds in (0, MAX_ADVANCE].

    Raises ``ValueError`` with one line for the user. ``bool`` is refused although
    Python counts it as an int (``{"advance": true}`` is a mistake, not 1 s).
    Comparisons come before ``float()``: a huge JSON integer must not overflow.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("advance must be a number of seconds, e.g. 90")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("advance must be a finite number of seconds")
    if value <= 0:
        raise ValueError("advance must be more than 0 seconds: the clock only moves forward")
    if value > MAX_ADVANCE:
        raise ValueError(f"advance must be at most {MAX_ADVANCE} seconds (10 years) at a time")
    return float(value)


def parse_advance_text(text: str) -> float:
    """``parse_advance`` for a command-line or console argument ("90", "1.5", "3600")."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"advance must be a number of seconds, e.g. 90 (got {text[:40]!r})") from None
    return parse_advance(value)


class Clock:
    """``base()`` plus ``offset``; ``offset`` only grows (``advance``). Call ``now`` for the time."""

    __slots__ = ("base", "offset")

    def __init__(self, base: Callable[[], float] = time.monotonic) -> None:
        self.base = base
        self.offset = 0.0

    def now(self) -> float:
        return self.base() + self.offset

    def advance(self, seconds: object) -> float:
        """Move forward by ``seconds`` (checked by ``parse_advance``); returns the new offset.

        ``ValueError`` (one line) for a bad step or one that would pass ``MAX_OFFSET`` in total;
        the offset is then unchanged.
        """
        step = parse_advance(seconds)
        if self.offset + step > MAX_OFFSET:
            raise ValueError(
                f"the clock is already {seconds_text(self.offset)} s ahead; "
                f"at most {MAX_OFFSET} seconds (100 years) in total"
            )
        self.offset += step
        return self.offset
