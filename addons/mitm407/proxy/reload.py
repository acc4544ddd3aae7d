"""Hot reload of the scenario: poll its files, load a settled edit off the loop, never die.

What can go wrong while a live proxy reloads, and what this module does:

- **Any error** (a located ``ScenarioError``, or anything else a bug or a
  hostile file may raise: RecursionError, MemoryError, ...) is logged once per
  edit and the last good scenario stays. The poll loop catches everything but
  cancellation, so one bad edit can never stop later edits from loading.
- **Half-written files**: an editor saving in place truncates, then writes.
  A changed file is loaded only once its signature (mtime, size of every file
  the scenario read) has stayed the same for ``settle`` seconds, and a load
  whose files changed while it ran is thrown away (error or not) and retried
  once they settle: a half is never served and never reported as a rejection.
- **Big files** (a million-line htpasswd: seconds of parsing) are loaded in a
  worker thread; only the swap runs on the event loop, so requests keep being
  answered meanwhile.

Pure asyncio (no mitmproxy import): the addon passes what to load and how to
install, and ``run`` is its watcher task.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from mitm407.core.problems import ScenarioError
from mitm407.scenario.load import Scenario, load_scenario

logger = logging.getLogger("mitm407")

Signature = tuple[tuple[str, int, int], ...]

DEFAULT_SETTLE = 1  # seconds a changed file must stay unchanged before it is loaded


def file_signature(paths: tuple[str, ...]) -> Signature:
    """(path, mtime, size) of each file: what the reload watcher compares."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((path, st.st_mtime_ns, st.st_size))
        except (OSError, ValueError):  # gone, unreadable, or a name the OS refuses
            out.append((path, -1, -1))
    return tuple(out)


@dataclass(frozen=True)
class Pending:
    """A change seen but not loaded yet: its signature and when it was first seen (monotonic)."""

    signature: Signature
    since: float


class Reloader:
    """Decides when a changed scenario is loaded, loads it in a worker thread, installs it on the loop.

    ``current`` returns the installed scenario (None before the first load);
    ``install`` swaps a new one in (on the event loop); ``load`` reads a
    scenario file (in a worker thread; tests pass their own).
    """

    def __init__(
        self,
        current: Callable[[], Scenario | None],
        install: Callable[[Scenario], None],
        load: Callable[[str], Scenario] = load_scenario,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.current = current
        self.install = install
        self.load = load
        self.clock = clock
        self.handled: Signature = ()  # the files as last loaded or rejected: no work until they change
        self.pending: Pending | None = None

    def loaded(self, scenario: Scenario) -> None:
        """A scenario was installed (start-up, option change, reload): watch its files from here."""
        self.handled = file_signature(scenario.files)
        self.pending = None

    async def run(self, interval: Callable[[], float], settle: Callable[[], float]) -> None:
        """The watcher task: poll every ``interval()`` seconds (0: off) until cancelled; never raises otherwise."""
        while True:
            every = interval()
            await asyncio.sleep(self.next_delay(every, settle()))
            if every > 0:
                await self.step(settle())

    def next_delay(self, interval: float, settle: float) -> float:
        """Poll at the interval; while a change settles, look again after the settle time if sooner."""
        if interval <= 0:
            return 1.0
        if self.pending is not None:
            return max(0.05, min(interval, settle))
        return interval

    async def step(self, settle: float) -> None:
        """One poll. Catches everything (but cancellation): the watcher must outlive any edit."""
        try:
            await self.poll(settle)
        except Exception as e:  # noqa: BLE001 (a watcher that dies stops every later edit from loading)
            logger.error("mitm407: scenario reload failed, keeping the previous one: %s: %s", type(e).__name__, e)
            logger.debug("mitm407: scenario reload failure", exc_info=True)  # a bug: traceback at debug level

    async def poll(self, settle: float) -> None:
        scenario = self.current()
        if scenario is None:
            return
        signature = file_signature(scenario.files)
        if signature == self.handled:
            self.pending = None
            return
        now = self.clock()
        if self.pending is None or self.pending.signature != signature:
            self.pending = Pending(signature, now)  # changed (again): wait until it stays put
            return
        if now - self.pending.since < settle:
            return
        await self.reload(scenario, signature)

    async def reload(self, scenario: Scenario, signature: Signature) -> None:
        """Load in a worker thread; install on the loop unless the files moved on meanwhile."""
        logger.info("mitm407: scenario files changed, loading %s in a worker thread", scenario.path)
        try:
            new = await asyncio.to_thread(self.load, scenario.path)
        except ScenarioError as e:
            if self.still(scenario, signature):
                self.handled, self.pending = signature, None  # reported once, until the next edit
                logger.error("mitm407: scenario edit rejected, keeping the previous one:\n%s", e)
            return
        except Exception as e:  # noqa: BLE001 (not a located problem: a bug, or a resource exhausted)
            if self.still(scenario, signature):
                self.handled, self.pending = signature, None
                logger.error("mitm407: scenario edit could not be loaded, keeping the previous one: %s: %s",
                             type(e).__name__, e)
                logger.debug("mitm407: scenario load failure", exc_info=True)
            return
        if not self.still(scenario, signature):
            return  # written to while loading: load it again once it settles
        self.install(new)  # logs the switch (banner.describe_switch): "reloaded scenario 'NAME' from PATH ..."
        self.loaded(new)

    def still(self, scenario: Scenario, signature: Signature) -> bool:
        """The load's result still applies: same scenario installed, its files unchanged since the load began.

        Otherwise the result (a success or an error) describes a file mid-write,
        or a scenario replaced meanwhile (the ``scenario`` option changed): it is dropped.
        """
        if self.current() is not scenario:
            return False
        if file_signature(scenario.files) != signature:
            self.pending = None
            return False
        return True
