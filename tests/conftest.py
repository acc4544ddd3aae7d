"""Shared fixtures: a local origin (HTTP and HTTPS), mitmdump factories, a shared CA.

Every process a test starts is stopped by the fixture that started it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "addons"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import Mitmdump, Origin, make_tls_context, start_mitmdump  # noqa: E402


@pytest.fixture(scope="session")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mitmproxy confdir (and CA) for the whole session."""
    return tmp_path_factory.mktemp("mitmconf")


@pytest.fixture(scope="session")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every process log goes; the secrets test greps all of it."""
    return tmp_path_factory.mktemp("logs")


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
