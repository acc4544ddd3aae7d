"""Typed, located reading of YAML documents.

PyYAML's ``safe_load`` throws positions away; scenario errors must name
``file:line:col``. So we ``compose`` the node graph (which keeps marks) and
read it through ``Mapping``, which checks types, records every key the schema
asks for, and reports duplicate and unknown keys with a "did you mean" hint.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from mitm407.core.problems import Problems, ScenarioError, did_you_mean

Node = yaml.Node


MAX_DEPTH = 32  # nested mappings/lists: a real scenario uses under 10
MAX_NODES = 500_000  # nodes of the document with every alias expanded (a "billion laughs" stops here)


class LimitExceeded(yaml.MarkedYAMLError):
    """The document is deeper or larger than ``compose`` allows."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded in nesting depth and in expanded size.

    PyYAML composes recursively: ~500 levels of ``[[[...`` (1 KB of text)
    exhaust Python's stack, and the RecursionError escaped as a traceback
    (and killed the reload watcher). Aliases are not expanded by composing,
    but anything that walks the graph sees them expanded, and PyYAML lets an
    anchor be used inside its own node (a cycle). Both are refused here, at
    the node that crosses the line.
    """

    def __init__(self, text: str, max_depth: int, max_nodes: int) -> None:
        super().__init__(text)
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.depth = 0
        self.sizes: dict[int, int] = {}  # id(node) -> node count with aliases expanded

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            if id(node) not in self.sizes:  # still being composed: the alias is inside its own anchor
                raise LimitExceeded(None, None, f"alias *{event.anchor} refers to a node that contains it",
                                    event.start_mark)
            return node
        start = self.peek_event().start_mark
        self.depth += 1
        if self.depth > self.max_depth:
            raise LimitExceeded(None, None, f"nested more than {self.max_depth} levels deep", start)
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        size = 1 + sum(self.sizes[id(child)] for child in _children(node))
        if size > self.max_nodes:
            raise LimitExceeded(None, None, f"more than {self.max_nodes} values (aliases expanded)", start)
        self.sizes[id(node)] = size
        return node


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


def compose(text: str, file: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Node | None:
    """Parse YAML text into a node graph; syntax errors and limits become a ScenarioError."""
    loader = None
    try:
        loader = _BoundedLoader(text, max_depth, max_nodes)  # checks the characters already
        return loader.get_single_node()
    except LimitExceeded as e:
        raise _located(file, e.problem_mark, f"YAML document too large: {e.problem}",
                       f"at most {max_depth} levels and {max_nodes} values") from None
    except yaml.MarkedYAMLError as e:
        raise _located(file, e.problem_mark or e.context_mark, f"YAML syntax error: {e.problem or e}") from None
    except yaml.YAMLError as e:  # e.g. a reader error on bad bytes
        raise _located(file, getattr(e, "problem_mark", None), f"YAML error: {e}") from None
    except RecursionError:  # a stack already deep when called: still one located error, never a traceback
        raise _located(file, None, "YAML document nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _located(file: str, mark: yaml.Mark | None, message: str, hint: str = "") -> ScenarioError:
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problems = Problems()
    problems.add(file, line, col, message, hint)
    return ScenarioError(problems.items)


_TYPE_NAMES = {
    "tag:yaml.org,2002:str": "a string",
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true/false",
    "tag:yaml.org,2002:null": "empty (null)",
    "tag:yaml.org,2002:map": "a mapping",
    "tag:yaml.org,2002:seq": "a list",
}


def describe(node: Node) -> str:
    """What a node is, in words, for "expected X, got Y" messages."""
    name = _TYPE_NAMES.get(node.tag, node.tag)
    if isinstance(node, yaml.ScalarNode) and scalar_value(node) is INVALID:  # e.g. ``!!int abc``
        return f"'{node.value[:40]}' marked as {name}, which it is not"
    return name


INVALID = object()  # a scalar whose tag cannot be constructed: every typed read reports it


def scalar_value(node: Node) -> Any:
    """The Python value of a scalar node (int, float, bool, None or str), or ``INVALID``.

    Explicit tags (``!!int abc``, ``!!python/object:...``) fail to construct;
    the caller then reports "must be an integer, got ..." with the node's place.
    """
    try:
        # a fresh constructor: a shared one keeps every node it ever built (and any it failed on)
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except Exception:  # user text: any failure to construct means "not a valid value", reported by the caller
        return INVALID


class Reader:
    """Shared state of one document read: its file name and the problem list."""

    def __init__(self, file: str, problems: Problems) -> None:
        self.file = file
        self.problems = problems

    def error(self, node: Node, message: str, hint: str = "") -> None:
        mark = node.start_mark
        self.problems.add(self.file, mark.line + 1, mark.column + 1, message, hint)

    def mapping(self, node: Node | None, what: str) -> Mapping | None:
        """Read ``node`` as a mapping; reports and returns None when it is not one."""
        if node is None:
            return None
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping, got {describe(node)}")
            return None
        return Mapping(self, node, what)

    def sequence(self, node: Node | None, what: str) -> list[Node]:
        """Read ``node`` as a list; a single scalar counts as a one-item list."""
        if node is None:
            return []
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null":
            return [node]
        self.error(node, f"{what} must be a list, got {describe(node)}")
        return []

    def text(self, node: Node, what: str) -> str | None:
        """A scalar as the text written in the file (so ``0123`` stays ``0123``)."""
        if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null":
            return node.value
        self.error(node, f"{what} must be a string, got {describe(node)}")
        return None

    def integer(self, node: Node, what: str, minimum: int | None = None) -> int | None:
        value = scalar_value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, int) or isinstance(value, bool):
            self.error(node, f"{what} must be an integer, got {describe(node)}")
            return None
        if minimum is not None and value < minimum:
            self.error(node, f"{what} must be at least {minimum}, got {value}")
            return None
        return value

    def number(self, node: Node, what: str, minimum: float | None = None) -> float | None:
        value = scalar_value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.error(node, f"{what} must be a number, got {describe(node)}")
            return None
        if minimum is not None and value < minimum:
            self.error(node, f"{what} must be at least {minimum}, got {value}")
            return None
        return float(value)

    def boolean(self, node: Node, what: str) -> bool | None:
        value = scalar_value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, bool):
            self.error(node, f"{what} must be true or false, got {describe(node)}")
            return None
        return value

    def choice(self, node: Node, what: str, choices: tuple[str, ...]) -> str | None:
        value = self.text(node, what)
        if value is None:
            return None
        if value.lower() not in [c.lower() for c in choices]:
            self.error(node, f"unknown value '{value}' for {what}", did_you_mean(value, choices))
            return None
        return next(c for c in choices if c.lower() == value.lower())


class Mapping:
    """A YAML mapping read key by key; ``finish`` reports keys nobody asked for."""

    def __init__(self, reader: Reader, node: yaml.MappingNode, what: str) -> None:
        self.reader = reader
        self.node = node
        self.what = what
        self.entries: dict[str, tuple[Node, Node]] = {}
        self.known: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                reader.error(key_node, f"keys of {what} must be strings")
                continue
            if key in self.entries:
                first = self.entries[key][0].start_mark.line + 1
                reader.error(key_node, f"duplicate key '{key}' in {what}", f"first defined on line {first}")
                continue
            self.entries[key] = (key_node, value_node)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> Node | None:
        """The value node for ``key`` (None when absent); marks the key as known."""
        self.known.add(key)
        entry = self.entries.get(key)
        return entry[1] if entry else None

    def key_node(self, key: str) -> Node:
        return self.entries[key][0]

    def items(self) -> Iterator[tuple[str, Node, Node]]:
        """Every (key, key node, value node): for mappings whose keys are data (users)."""
        for key, (key_node, value_node) in self.entries.items():
            self.known.add(key)
            yield key, key_node, value_node

    def _value(self, key: str, required: bool) -> Node | None:
        node = self.get(key)
        if node is None and required:
            self.reader.error(self.node, f"{self.what} needs the key '{key}'")
        if node is not None and node.tag == "tag:yaml.org,2002:null" and not required:
            return None
        return node

    def text(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        node = self._value(key, required)
        return default if node is None else self.reader.text(node, f"'{key}'")

    def integer(self, key: str, default: int | None = None, minimum: int | None = None) -> int | None:
        node = self._value(key, False)
        if node is None:
            return default
        value = self.reader.integer(node, f"'{key}'", minimum)
        return default if value is None else value

    def number(self, key: str, default: float | None = None, minimum: float | None = None) -> float | None:
        node = self._value(key, False)
        if node is None:
            return default
        value = self.reader.number(node, f"'{key}'", minimum)
        return default if value is None else value

    def boolean(self, key: str, default: bool) -> bool:
        node = self._value(key, False)
        if node is None:
            return default
        value = self.reader.boolean(node, f"'{key}'")
        return default if value is None else value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        node = self._value(key, False)
        if node is None:
            return default
        return self.reader.choice(node, f"'{key}'", choices) or default

    def text_list(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A list of strings; a single string is accepted as a one-item list."""
        node = self._value(key, False)
        if node is None:
            return default
        items = (self.reader.text(n, f"items of '{key}'") for n in self.reader.sequence(node, f"'{key}'"))
        return tuple(i for i in items if i is not None)

    def choice_list(self, key: str, choices: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
        """A list of values from ``choices``, without repeats, in the order written."""
        node = self._value(key, False)
        if node is None:
            return default
        out: list[str] = []
        for item in self.reader.sequence(node, f"'{key}'"):
            value = self.reader.choice(item, f"'{key}' item", choices)
            if value is None:
                continue
            if value in out:
                self.reader.error(item, f"'{value}' is listed twice in '{key}'")
                continue
            out.append(value)
        return tuple(out)

    def mapping(self, key: str) -> Mapping | None:
        return self.reader.mapping(self._value(key, False), f"'{key}'")

    def finish(self, extra_known: tuple[str, ...] = ()) -> None:
        """Report every key that the schema did not ask for, with a suggestion."""
        known = self.known | set(extra_known)
        for key, (key_node, _) in self.entries.items():
            if key not in known:
                self.reader.error(key_node, f"unknown key '{key}' in {self.what}", did_you_mean(key, known))
