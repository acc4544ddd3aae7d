"""The users the schemes check credentials against, swappable without rebuilding the schemes.

A fault ``rotate`` changes one user's valid password while the proxy runs.
Rebuilding every scheme for that would also throw away state that has
nothing to do with passwords: Digest's nonces and replay counters, NTLM
handshakes in flight, cached Basic checks of other users. So the schemes of
one scenario load share one ``UserDirectory``: a ``dict`` (lookups stay as
fast as a plain dict's on the hot path) that also tells whoever derived data
from a user (Digest's HA1, NTLM's hashes) when that user changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mitm407.core.credentials import User

Watcher = Callable[[frozenset[str]], None]


class UserDirectory(dict[str, User]):
    """User name -> ``User``, with change notification. Only ``replace_users`` should change it."""

    def __init__(self, users: Mapping[str, User] = {}) -> None:  # noqa: B006 (never mutated)
        super().__init__(users)
        self._watchers: list[Watcher] = []

    def watch(self, watcher: Watcher) -> None:
        """Call ``watcher(names)`` after users named ``names`` were added, changed or removed."""
        self._watchers.append(watcher)

    def replace_users(self, users: Mapping[str, User]) -> frozenset[str]:
        """Make the directory equal to ``users``; returns (and announces) the names that changed."""
        changed = frozenset(
            name for name in self.keys() | users.keys() if self.get(name) is not users.get(name)
        )
        if not changed:
            return changed
        for name in changed:
            user = users.get(name)
            if user is None:
                del self[name]
            else:
                self[name] = user
        for watcher in self._watchers:
            watcher(changed)
        return changed


def watch_users(users: Mapping[str, User], watcher: Watcher) -> None:
    """Subscribe ``watcher`` if ``users`` is a ``UserDirectory`` (a plain mapping never changes)."""
    if isinstance(users, UserDirectory):
        users.watch(watcher)
