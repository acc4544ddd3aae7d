"""Fault ``rotate``: one user's valid password changes on a schedule (top level only)."""

from __future__ import annotations

from dataclasses import dataclass

from mitm407.core.credentials import Secret, User
from mitm407.core.facts import RequestFacts
from mitm407.core.results import Result
from mitm407.core.yamlnodes import Node, Reader
from mitm407.faults.base import (
    BuildContext,
    Decision,
    FaultKind,
    Key,
    Schedule,
    read_schedule,
    schedule_keys,
    settings_of,
)


@dataclass(frozen=True)
class RotateSettings:
    user: str
    passwords: tuple[str, ...] = ()  # repr would show them: never log a RotateSettings
    schedule: Schedule = Schedule(requests=1)
    cycle: bool = True  # after the last password, start again with the first

    def __repr__(self) -> str:
        return f"Rotate(user={self.user!r}, passwords=<{len(self.passwords)} hidden>, schedule={self.schedule})"


def parse_rotate(reader: Reader, node: Node) -> RotateSettings:
    m = settings_of(reader, node, "rotate")
    if m is None:
        reader.error(node, "'rotate' needs 'user', 'passwords' and 'period' or 'requests'")
        return RotateSettings("")
    user = m.text("user", required=True) or ""
    passwords = m.text_list("passwords")
    if len(passwords) < 2:
        reader.error(m.get("passwords") or m.node, "'rotate' needs at least two 'passwords'")
    schedule = read_schedule(reader, m, node, "rotate", seconds_key="period")
    cycle = m.boolean("cycle", True)
    m.finish()
    return RotateSettings(user, passwords, schedule, cycle)


class Rotate:
    """The valid password of one user changes on a schedule; see ``FaultEngine.rotated_users``."""

    name = "rotate"

    def __init__(self, config: RotateSettings, context: BuildContext) -> None:
        self.config = config
        self.accepted = 0  # requests accepted for the user (schedule by requests)
        self.started: float | None = None  # first request seen (schedule by period)
        self.skipped = 0  # steps the operator moved on by hand (control API ``POST /rotate``)
        source = context.users.get(config.user)
        self.domain = source.domain if source else ""

    def index(self, now: float) -> int:
        schedule, count = self.config.schedule, len(self.config.passwords)
        if schedule.requests is not None:
            step = self.accepted // schedule.requests
        else:
            if self.started is None:
                self.started = now
            step = int((now - self.started) // (schedule.seconds or 1))
        step += self.skipped
        return step % count if self.config.cycle else min(step, count - 1)

    def advance(self) -> None:
        """The next password takes effect now, whatever the schedule says."""
        self.skipped += 1

    def user_at(self, index: int) -> User:
        secret = Secret("cleartext", self.config.passwords[index])
        return User(self.config.user, secret, f"fault rotate (password {index + 1})", self.domain)

    def decide(self, facts: RequestFacts, decision: Decision, now: float) -> Decision:
        auth = decision.verdict.auth
        if auth.result is Result.OK and auth.user == self.config.user:
            self.accepted += 1
        return decision


ROTATE = FaultKind(
    name="rotate",
    doc=(
        "The user's valid password is `p1`, then `p2`, ... changing every T seconds from the first request "
        "the proxy sees, or after every N accepted requests; `cycle: false` stays on the last. It replaces "
        "the user's password from `users:`; at each change the new password replaces the old one in the user "
        "directory the schemes read (that user's cached checks start over; other users, Digest nonces and NTLM "
        "handshakes are kept). The control API's `POST /rotate` moves to the next password at once. "
        "Reproduces a password change in the directory while "
        "clients run (a forced 90-day rotation, a service account's secret rotated by a vault): clients that "
        "cached the old password must notice the 407 and pick up the new one instead of locking the account."
    ),
    keys=(
        Key("user", "text", "(required)", "the user whose password rotates"),
        Key("passwords", "list of text", "(required, ≥ 2)", "the valid passwords, in order"),
        *schedule_keys("period"),
        Key("cycle", "boolean", "true", "after the last password, start again with the first"),
    ),
    parse=parse_rotate,
    build=Rotate,
    top_level_only=True,
)

KINDS = (ROTATE,)
