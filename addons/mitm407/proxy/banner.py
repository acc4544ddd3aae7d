"""The start-up banner's fault lines: which faults a scenario switches on, and where.

A teacher (or a tester reading a CI log) should see at start-up that this proxy
misbehaves on purpose, and how, without opening the YAML. The text is built
from the parsed settings, generically (any frozen dataclass of settings), so a
new fault needs no change here. Settings whose name says they are secret
(``passwords``, ``secret``, ``token``) are shown as a count, never as values.
Pure: no mitmproxy, no logging; the addon decides where the lines go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from mitm407.scenario.load import Scenario

SECRET_WORDS = ("password", "secret", "token", "hash")


def is_secret(field_name: str) -> bool:
    return any(word in field_name.lower() for word in SECRET_WORDS)


def describe_value(value: Any) -> str:
    """A settings value as written in YAML terms: nested settings flattened, tuples as lists."""
    describe = getattr(value, "describe", None)
    if callable(describe):
        return str(describe())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return "{" + ", ".join(describe_settings(value)) + "}"
    if isinstance(value, tuple):
        return "[" + ", ".join(describe_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def is_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return bool(value == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(value == f.default_factory())
    return False


def describe_settings(settings: Any) -> list[str]:
    """``key=value`` for each field of a settings dataclass that differs from its default.

    What the scenario chose, not the defaults it left alone: a banner line stays
    short. Secrets are counted, never shown.
    """
    if not dataclasses.is_dataclass(settings) or isinstance(settings, type):
        return []
    out = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if is_default(f, value):
            continue
        if is_secret(f.name):
            count = len(value) if isinstance(value, (tuple, list)) else 1
            out.append(f"{f.name}=<{count} hidden>")
        elif dataclasses.is_dataclass(value) and not callable(getattr(value, "describe", None)):
            out.extend(f"{f.name}.{item}" for item in describe_settings(value))
        else:
            out.append(f"{f.name}={describe_value(value)}")
    return out


def describe_fault(spec: Any) -> str:
    """``lockout: failures=3, seconds=300, status=403 (line 31)``; the name alone if settings are odd."""
    try:
        settings = ", ".join(describe_settings(spec.settings))
    except Exception:  # a banner never stops the proxy from starting  # noqa: BLE001
        settings = ""
    line = f" (line {spec.line})" if getattr(spec, "line", 0) else ""
    return f"{spec.name}{': ' + settings if settings else ''}{line}"


def fault_lines(scenario: Scenario) -> Iterable[str]:
    for spec in scenario.faults:
        yield f"all requests: {describe_fault(spec)}"
    for rule in scenario.rules.rules:
        for spec in rule.faults:
            yield f"{rule.label}: {describe_fault(spec)}"


def describe_faults(scenario: Scenario) -> str:
    """The banner text: one line per active fault (top-level first, then per rule), or 'no faults'."""
    lines = list(fault_lines(scenario))
    if not lines:
        return f"scenario '{scenario.name}': no faults (a well-behaved proxy)"
    head = f"scenario '{scenario.name}': {len(lines)} fault{'s' if len(lines) != 1 else ''} active"
    return "\n".join([head, *(f"  - {line}" for line in lines)])


def describe_switch(previous: Scenario | None, current: Scenario, source: str) -> str:
    """The log text when the scenario changes while running, whatever changed it.

    ``source`` says how: "file changed on disk" (the reload watcher), "option set in
    mitmweb or the console" (the ``scenario`` option changed at run time). A teacher
    switching scenarios mid-class and a tester reading a log see the same line, then
    the faults now active.
    """
    if previous is None or (previous.name, previous.path) == (current.name, current.path):
        head = f"reloaded scenario '{current.name}' from {current.path} ({source})"
    else:
        head = f"switched scenario '{previous.name}' -> '{current.name}' from {current.path} ({source})"
    return f"{head}\n{describe_faults(current)}"
