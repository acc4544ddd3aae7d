"""Slow password checks (bcrypt) in worker threads, one per distinct credential.

bcrypt costs ~50 ms of CPU per check. On mitmproxy's only event-loop thread
that stalls every proxied request for as long, so a flood of distinct wrong
passwords (or many users logging in at once) would stall all traffic. bcrypt
releases the GIL, so a worker thread really runs it beside the loop. The
result goes back into the scheme's cache on the loop thread (the cache is an
``OrderedDict`` no other thread touches); the request is then decided as any
cached one. Pure asyncio: no mitmproxy import.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from mitm407.core.results import AuthResult
from mitm407.gate.authorizer import SlowCheck
from mitm407.schemes.base import SlowSecretScheme

logger = logging.getLogger("mitm407")

MAX_WORKERS = 4
Key = tuple[SlowSecretScheme, str]  # (scheme, credentials): one check per scheme object and token
Checked = asyncio.Future[tuple[AuthResult, bool]]


def worker_count(cpus: int | None) -> int:
    """How many bcrypts may run at once: one core is left to the event loop, at most ``MAX_WORKERS``.

    bcrypt is pure CPU: more threads than spare cores would only take CPU from
    the loop thread (every other request) without checking any faster; the
    cap keeps a flood of wrong passwords from taking a large machine's CPU.
    Checks beyond the bound wait in the pool's queue, off the loop.
    """
    return max(1, min(MAX_WORKERS, (cpus or 2) - 1))


class SlowChecks:
    """Runs ``SlowCheck``s in a small thread pool; concurrent requests with the same credentials share one."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or worker_count(os.cpu_count())
        self._pool: ThreadPoolExecutor | None = None  # started on first use: most scenarios have no bcrypt
        self._inflight: dict[Key, Checked] = {}

    async def run(self, check: SlowCheck) -> None:
        """Check in a worker thread and cache the result in the scheme; returns once it is cached.

        A failure is logged (never the credentials) and swallowed: the caller
        then decides synchronously, which checks (and fails) exactly as before.
        """
        key = (check.scheme, check.credentials)
        future = self._inflight.get(key)
        if future is None:
            future = self._start(check, key)
        try:
            # shield: one request going away (its hook cancelled) must not cancel the others' check
            await asyncio.shield(future)
        except Exception as e:  # noqa: BLE001 (any failure: the synchronous path takes over)
            logger.warning("mitm407: slow password check failed in its worker thread (%s)", type(e).__name__)

    def _start(self, check: SlowCheck, key: Key) -> Checked:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="mitm407-slowcheck")
        future = asyncio.get_running_loop().run_in_executor(self._pool, check.scheme.slow_check, check.credentials)
        self._inflight[key] = future
        # Added before any waiter's, so it runs first: the cache is filled when the waiters resume.
        future.add_done_callback(lambda done: self._finish(check, key, done))
        logger.debug("mitm407: slow password check started in a worker thread (%d in flight)", len(self._inflight))
        return future

    def _finish(self, check: SlowCheck, key: Key, done: Checked) -> None:
        """On the loop thread: forget the check and cache its result in the scheme that asked."""
        self._inflight.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            check.scheme.remember(check.credentials, done.result())

    async def then_decide(
        self,
        check: SlowCheck,
        done: Callable[[], bool],
        decide: Callable[[], Awaitable[None] | None],
        fail: Callable[[], None],
    ) -> None:
        """Run ``check``, then ``decide`` again on the loop (a cache hit), unless the request is ``done``.

        The one continuation of every caller (the auth addon, the login portal); guarded like their
        hooks: mitmproxy would forward a flow whose coroutine raised, so any exception calls ``fail``.
        """
        try:
            await self.run(check)
            if done():
                return
            later = decide()
            if later is not None:
                await later
        except Exception:
            fail()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def close(self) -> None:
        """Stop the workers without waiting: queued checks are dropped, their requests end with the proxy."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
