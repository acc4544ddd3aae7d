"""What authentication decided about one request: forward, challenge or deny, and why.

A value of the core layer so that everything above the scheme check (the
faults, the gate, the addon) can read and reshape a verdict without
importing the code that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mitm407.core.results import AuthResult
from mitm407.core.rules import Rule


class Action(StrEnum):
    FORWARD = "forward"
    CHALLENGE = "challenge"  # 407 (401 in reverse mode) with the schemes' challenges
    DENY = "deny"  # 403 from this proxy


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    auth: AuthResult
    rule: Rule | None
