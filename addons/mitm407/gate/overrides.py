"""What an operator changes at run time (the control API): expired and locked users.

Time-based faults (expiry, lockout) need a test to wait; a CI job would rather
say "now". These overrides act on the gate's verdict after the scheme and before
the faults, so faults still see (and count) the refusal. Pure: no mitmproxy, no
clock; the control API (``proxy/control.py``) calls the methods.
"""

from __future__ import annotations

from mitm407.core.results import AuthResult, Result
from mitm407.core.verdict import Action, Verdict
from mitm407.wire.terminal import escape_controls


class Overrides:
    """Users whose accepted credentials were expired, and users locked out, by the operator."""

    def __init__(self) -> None:
        self.accepted: set[str] = set()  # users accepted since the last expiry: who ``expire_all`` expires
        self.expired: set[str] = set()  # challenged once more, on their next accepted request
        self.locked: set[str] = set()  # refused until unlocked

    def expire_all(self) -> list[str]:
        """Every user accepted so far is challenged on its next request; returns them (names, sorted)."""
        expired = sorted(self.accepted)
        self.expired.update(self.accepted)
        self.accepted.clear()
        return expired

    def lock(self, user: str) -> None:
        self.locked.add(user)

    def unlock(self, user: str) -> bool:
        """True if the user was locked."""
        if user in self.locked:
            self.locked.discard(user)
            return True
        return False

    def apply(self, verdict: Verdict) -> Verdict:
        """The verdict after the operator's changes: a locked or expired user's success becomes a 407."""
        auth = verdict.auth
        user = auth.user
        if auth.result is not Result.OK or not user:
            return verdict
        if user in self.locked:
            return self.refuse(verdict, f"account '{escape_controls(user, 64)}' is locked (control API)")
        if user in self.expired:
            self.expired.discard(user)
            return self.refuse(verdict, f"credentials of '{escape_controls(user, 64)}' expired (control API)")
        self.accepted.add(user)
        return verdict

    @staticmethod
    def refuse(verdict: Verdict, reason: str) -> Verdict:
        auth = verdict.auth
        refused = AuthResult(Result.BAD_CREDENTIALS, reason, auth.scheme, auth.user)
        return Verdict(Action.CHALLENGE, refused, verdict.rule)
