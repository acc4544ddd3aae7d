"""The one place mitm407 relies on mitmproxy behaviour its docs do not promise.

``offer_hook``: mitmproxy looks a hook up on the addon object at every event
(``getattr``), so a hook set as an *instance* attribute is called, and one
removed is not; and it awaits whatever a hook returns if that is awaitable,
so a sync hook may return a coroutine (a delay, a slow check) and cost no
coroutine on the common path. Both hold on mitmproxy 11 and 12;
``tests/test_compat.py`` fails if a release changes either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def offer_hook(addon: Any, name: str, hook: Callable[..., object] | None) -> None:
    """Offer mitmproxy the hook ``name`` on ``addon`` (``hook``), or stop offering it (None)."""
    if hook is None:
        addon.__dict__.pop(name, None)
    else:
        setattr(addon, name, hook)
