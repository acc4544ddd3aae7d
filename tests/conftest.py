"""Shared fixtures: a local origin (HTTP and HTTPS), mitmdump factories, a shared CA; two session guards.

Every process a test starts is stopped by the fixture that started it. The guards:
the secret scan (tests/secretscan.py: no registered secret in any log the session
wrote, checked when the session finishes), and the e2e marker check (a test that
starts a process must be marked ``e2e``, so ``make unit`` stays in-process and fast).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "addons"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import Mitmdump, Origin, make_tls_context, start_mitmdump  # noqa: E402

# The secret scan: the ``logdir`` fixture and the session-finish hook (a plugin, so a stand-alone
# pytest run can load it too: ``-p secretscan``).
pytest_plugins = ["secretscan"]


@pytest.fixture(scope="session")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mitmproxy confdir (and CA) for the whole session."""
    return tmp_path_factory.mktemp("mitmconf")


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.close()


@pytest.fixture(scope="module")
def tls_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    server = Origin(make_tls_context(tmp_path_factory.mktemp("origin-tls")))
    yield server
    server.close()


class _Starter:
    """Starts mitmdump processes and remembers them so they can all be stopped."""

    def __init__(self, logdir: Path, confdir: Path) -> None:
        self.logdir, self.confdir = logdir, confdir
        self.started: list[Mitmdump] = []

    def __call__(self, **kwargs) -> Mitmdump:
        dump = start_mitmdump(self.logdir, self.confdir, **kwargs)
        self.started.append(dump)
        return dump

    def stop_all(self) -> None:
        for dump in self.started:
            dump.stop()


@pytest.fixture
def mitmdump_factory(logdir: Path, confdir: Path) -> Iterator[_Starter]:
    """``start(options=..., ...)`` -> Mitmdump; all are stopped after the test."""
    starter = _Starter(logdir, confdir)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def module_mitmdump(logdir: Path, confdir: Path) -> Iterator[_Starter]:
    """Like ``mitmdump_factory`` but the processes live for the whole module."""
    starter = _Starter(logdir, confdir)
    yield starter
    starter.stop_all()


# -- the e2e marker check ---------------------------------------------------------

PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.spawn"})
_running: list[pytest.Item] = []  # the item whose setup, call or teardown runs now


class UnmarkedProcessError(RuntimeError):
    """A test without the e2e marker started a process."""


def _refuse_processes_outside_e2e(event: str, args: tuple) -> None:
    """An audit hook (PEP 578): sees every way Python starts a process, whatever the test imported."""
    if event in PROCESS_EVENTS and _running and _running[-1].get_closest_marker("e2e") is None:
        what = args[1] if event == "subprocess.Popen" else args[0]
        raise UnmarkedProcessError(
            f"{_running[-1].nodeid} starts a process ({event}: {what!r}) but is not marked e2e: "
            "add @pytest.mark.e2e (or pytestmark) so `make unit` stays in-process"
        )


_audit_hook_added = []


def pytest_configure(config: pytest.Config) -> None:
    if not _audit_hook_added:  # audit hooks cannot be removed: add it once per interpreter
        sys.addaudithook(_refuse_processes_outside_e2e)
        _audit_hook_added.append(True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


@pytest.fixture
def gate_threads(monkeypatch) -> list:
    """The thread each ``Gate`` the auth addon builds from now on is built in, in order."""
    import threading

    from mitm407.proxy import addon as addon_module

    threads: list[threading.Thread] = []

    class SpyGate(addon_module.Gate):
        def __init__(self, *args, **kwargs) -> None:
            threads.append(threading.current_thread())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(addon_module, "Gate", SpyGate)
    return threads
