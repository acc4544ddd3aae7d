"""Problems found in user input, located as ``file:line:col``.

Every error a user can cause with a scenario (or a file it names) becomes one
``Problem``; a load collects all of them before failing so that one ``check``
run lists everything wrong, not just the first thing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from mitm407.wire.terminal import escape_controls

MAX_REPORTED = 100  # problems listed one by one; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One thing wrong, at a 1-based line and column of a file."""

    file: str
    line: int
    col: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        """One line, printable: a message quoting the file (a key, a YAML error) may hold
        newlines or terminal escapes; each such character is shown escaped."""
        text = f"{self.file}:{self.line}:{self.col}: {self.message}"
        return escape_controls(f"{text} ({self.hint})" if self.hint else text)


class ScenarioError(ValueError):
    """A scenario (or a file it references) is invalid; carries every problem."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Problems:
    """Collects problems for one load; raise once at the end with ``raise_if_any``."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, file: str, line: int, col: int, message: str, hint: str = "") -> None:
        self.items.append(Problem(file, line, col, message, hint))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.items.extend(problems)

    def raise_if_any(self) -> None:
        """Raise every problem, in file order; past ``MAX_REPORTED`` the rest is one counted line
        (a million-line htpasswd of bad lines must not print a million errors)."""
        if not self.items:
            return
        items = sorted(self.items, key=lambda p: (p.file, p.line, p.col))
        if len(items) > MAX_REPORTED:
            rest = items[MAX_REPORTED]
            more = len(items) - MAX_REPORTED
            items = [*items[:MAX_REPORTED], Problem(rest.file, rest.line, rest.col, f"... and {more} more problems")]
        raise ScenarioError(items)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A "did you mean" hint for a misspelt key or value, or a list of choices."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "expected one of: " + ", ".join(choices) if choices else ""
