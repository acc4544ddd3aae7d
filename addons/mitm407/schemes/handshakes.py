"""Per-connection handshake state for connection-bound schemes (NTLM, Negotiate).

A handshake lives between the Type 1 and the Type 3 message of one client
connection. The table is bounded twice, so a client that opens thousands of
connections and never finishes cannot grow it: by count (the oldest entry is
dropped first) and by age (an entry older than ``max_age`` is treated as
absent). ``drop`` is called when the client connection closes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class HandshakeTable(Generic[T]):
    """``connection_id -> state``, bounded by ``max_entries`` and ``max_age`` seconds."""

    def __init__(self, max_entries: int, max_age: float, clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._entries

    def put(self, connection_id: str, state: T) -> None:
        """Start (or restart) the handshake of a connection; evict the oldest beyond the cap."""
        now = self.clock()
        self._entries.pop(connection_id, None)
        self._entries[connection_id] = (now, state)
        # Oldest first (insertion order = start time): drop the expired, then the excess.
        while self._entries:
            started, _ = next(iter(self._entries.values()))
            if now - started <= self.max_age and len(self._entries) <= self.max_entries:
                break
            self._entries.popitem(last=False)

    def take(self, connection_id: str) -> T | None:
        """Remove and return the state if it is there and not too old: one use per handshake."""
        entry = self._entries.pop(connection_id, None)
        if entry is None:
            return None
        started, state = entry
        if self.clock() - started > self.max_age:
            return None
        return state

    def drop(self, connection_id: str) -> None:
        self._entries.pop(connection_id, None)
