"""The reload watcher (proxy/reload.py), in process: real files, real loads, a fake clock.

A bad edit of every kind keeps the last good scenario and is logged once; a
later good edit still loads; an edit is loaded only once it has settled; a
load whose files changed meanwhile is dropped; nothing raised in a poll ends
the watcher.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mitm407.proxy.reload import Reloader
from mitm407.scenario.load import Scenario, load_scenario

GOOD = "version: 1\nusers: {carol: first}\n"
SETTLE = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Watched:
    """A Reloader around one scenario file, stepped by hand."""

    def __init__(self, path: Path, load: Callable[[str], Scenario] = load_scenario) -> None:
        self.path = path
        self.clock = Clock()
        self.installed: list[Scenario] = []
        self.scenario = load_scenario(path)
        self.reloader = Reloader(lambda: self.scenario, self.install, load, self.clock)
        self.reloader.loaded(self.scenario)

    def install(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.installed.append(scenario)

    def write(self, text: str, name: str | None = None) -> None:
        target = self.path if name is None else self.path.parent / name
        target.write_text(text, encoding="utf-8")
        bump(target)

    def settle(self) -> None:
        """Two polls, ``SETTLE`` apart: what the watcher does for a file that stays put."""
        asyncio.run(self.reloader.step(SETTLE))
        self.clock.now += SETTLE
        asyncio.run(self.reloader.step(SETTLE))

    def password(self) -> str:
        secret = self.scenario.users["carol"].secret
        return secret.value


def bump(path: Path) -> None:
    """A distinct mtime for each write (a filesystem's clock may be coarse)."""
    st = os.stat(path)
    bump.ns = max(getattr(bump, "ns", 0), st.st_mtime_ns) + 1_000_000_000
    os.utime(path, ns=(bump.ns, bump.ns))


@pytest.fixture
def watched(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD, encoding="utf-8")
    return Watched(path)


def deep(levels: int) -> str:
    return "version: 1\nusers: {carol: x}\nrules: " + "[" * levels + "]" * levels + "\n"


def fifo_secret(folder: Path) -> str:
    fifo = folder / "pipe"
    if not fifo.exists():
        os.mkfifo(fifo)
    return 'version: 1\nusers: {carol: "file:pipe"}\n'


BAD_EDITS = {
    "yaml syntax": lambda folder: "version: 1\nusers: {carol: [\n",
    "nested 500 deep": lambda folder: deep(500),
    "nested 5000 deep": lambda folder: deep(5000),
    "unknown key": lambda folder: GOOD + "realmm: x\n",
    "no version": lambda folder: "users: {carol: second}\n",
    "schemes not a list": lambda folder: GOOD + "schemes: basic\n",
    "no users": lambda folder: "version: 1\nusers: {}\n",
    "fifo secret": fifo_secret,
    "dev zero secret": lambda folder: 'version: 1\nusers: {carol: "file:/dev/zero"}\n',
    "alias cycle": lambda folder: "version: 1\nusers: {carol: x}\nrules: &a [*a]\n",
    "billion laughs": lambda folder: "version: 1\nusers: {carol: x}\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" if i else "l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n"
        for i in range(9)
    ) + "rules: *l8\n",
    "binary": lambda folder: "version: 1\nusers: {carol: \x00\x01}\n",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", list(BAD_EDITS))
def test_a_bad_edit_keeps_the_last_good_scenario_and_a_later_good_edit_loads(watched, kind, caplog):
    caplog.set_level(logging.INFO, "mitm407")
    watched.write(BAD_EDITS[kind](watched.path.parent))
    watched.settle()
    assert watched.installed == [] and watched.password() == "first"
    rejected = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(rejected) == 1, caplog.text
    assert f"{watched.path}:" in rejected[0].getMessage() and "Traceback" not in caplog.text
    watched.settle()  # the same bad file: not reported twice
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    watched.write("version: 1\nusers: {carol: second}\n")
    watched.settle()
    assert watched.password() == "second" and len(watched.installed) == 1


def test_an_unexpected_exception_in_the_load_is_logged_and_the_next_edit_loads(tmp_path, caplog):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    failures = [RecursionError("maximum recursion depth exceeded"), MemoryError()]

    def load(name: str) -> Scenario:
        if failures:
            raise failures.pop(0)
        return load_scenario(name)

    watched = Watched(path, load)
    for _ in range(2):
        watched.write(GOOD.replace("first", "never"))
        watched.settle()
        assert watched.installed == []
    assert "RecursionError" in caplog.text and "MemoryError" in caplog.text
    watched.write(GOOD.replace("first", "second"))
    watched.settle()
    assert watched.password() == "second"


def test_a_poll_that_raises_does_not_end_the_watcher(watched, caplog):
    calls = []

    def broken() -> Scenario:
        calls.append(1)
        raise RuntimeError("boom")

    watched.reloader.current = broken
    asyncio.run(watched.reloader.step(SETTLE))  # returns: logged, not raised
    assert "RuntimeError: boom" in caplog.text

    async def run_three_polls() -> None:
        task = asyncio.ensure_future(watched.reloader.run(lambda: 0.01, lambda: SETTLE))
        while len(calls) < 4:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(run_three_polls(), 10))
    assert len(calls) >= 4


def test_an_edit_loads_only_once_it_has_settled(watched):
    watched.write("version: 1\nusers: {carol: sec")  # half of an edit: valid YAML, a different password
    asyncio.run(watched.reloader.step(SETTLE))
    watched.clock.now += SETTLE / 2
    asyncio.run(watched.reloader.step(SETTLE))
    assert watched.installed == []  # seen twice, not yet settled
    watched.write("version: 1\nusers: {carol: second}\n")  # the rest
    watched.clock.now += SETTLE / 2
    asyncio.run(watched.reloader.step(SETTLE))  # changed again: the settle time starts over
    assert watched.installed == []
    watched.clock.now += SETTLE
    asyncio.run(watched.reloader.step(SETTLE))
    assert [s.users["carol"].secret.value for s in watched.installed] == ["second"]


def test_a_load_whose_file_changed_meanwhile_is_dropped_error_or_not(tmp_path, caplog):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    rest = ["version: 1\nusers: {carol: third}\n", "version: 1\nusers: {carol: second}\n"]

    def load_while_written(name: str) -> Scenario:
        """The editor writes the next part while the load runs."""
        try:
            return load_scenario(name)
        finally:
            if rest:
                path.write_text(rest.pop())
                bump(path)

    watched = Watched(path, load_while_written)
    watched.write("version: 1\nusers: {carol: [")  # half: a syntax error
    watched.settle()
    assert watched.installed == [] and "rejected" not in caplog.text  # not yet, not an error
    watched.settle()  # the rest settles; the load again sees a change meanwhile: dropped
    assert watched.installed == []
    watched.settle()
    assert [s.users["carol"].secret.value for s in watched.installed] == ["third"]
    assert "rejected" not in caplog.text


def test_an_option_change_during_a_load_wins(watched):
    other = load_scenario(watched.path)

    def load_and_switch(name: str) -> Scenario:
        watched.scenario = other  # the `scenario` option changed while the worker thread loaded
        return load_scenario(name)

    watched.reloader.load = load_and_switch
    watched.write("version: 1\nusers: {carol: second}\n")
    watched.settle()
    assert watched.installed == [] and watched.scenario is other


def test_a_file_the_scenario_names_is_watched_too(tmp_path):
    (tmp_path / "carol.secret").write_text("first\n")
    path = tmp_path / "s.yaml"
    path.write_text('version: 1\nusers: {carol: "file:carol.secret"}\n')
    watched = Watched(path)
    watched.write("second\n", "carol.secret")
    watched.settle()
    assert watched.password() == "second"


def test_the_load_runs_in_a_worker_thread(watched):
    import threading

    threads = []

    def load(name: str) -> Scenario:
        threads.append(threading.current_thread())
        return load_scenario(name)

    watched.reloader.load = load
    watched.write("version: 1\nusers: {carol: second}\n")
    watched.settle()
    assert threads and threads[0] is not threading.main_thread() and watched.password() == "second"


def test_the_auth_addon_builds_a_reloaded_gate_in_the_worker_thread(tmp_path, gate_threads):
    """A reload builds the new scenario's gate (schemes, user tables) off the event loop; install only swaps."""
    import threading

    from mitm407.proxy.addon import Addon
    from mitm407.proxy.reload import file_signature

    built_in = gate_threads
    path = tmp_path / "s.yaml"
    path.write_text(GOOD, encoding="utf-8")
    auth = Addon()
    auth.install(load_scenario(path))
    assert built_in == [threading.main_thread()]  # start-up and option changes: on the loop, as before
    first = auth.scenario
    path.write_text("version: 1\nusers: {carol: second}\n", encoding="utf-8")
    bump(path)
    asyncio.run(auth.reloader.reload(first, file_signature(first.files)))
    assert auth.scenario is not first and auth.gate.scenario is auth.scenario
    assert len(built_in) == 2 and built_in[1] is not threading.main_thread()
    assert auth._prepared is None  # handed over, not kept
    assert auth.gate.authorizer.users["carol"].secret.value == "second"
