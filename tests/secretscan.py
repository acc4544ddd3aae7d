"""The session's secret scan: no password or token a test used may appear in any log the session wrote.

A pytest plugin (tests/conftest.py imports its hooks and its ``logdir`` fixture;
a stand-alone run loads it with ``-p secretscan``). Why a session-finish hook and
not a test: a test can be deselected (``-k``), ordered away or run on another
xdist worker, and then a leak passes silently. ``pytest_sessionfinish`` runs in
every session; it scans every ``logdir`` the session created (mitmdump output,
hop logs, the chain command's output, Squid's logs) for every secret test modules
registered with ``procs.register_secret``, and a hit fails the session: an error
report naming ``file:line`` and whose secret it was (never the secret itself),
and a non-zero exit. Under xdist each worker scans its own logs and hands its
hits to the controller, which reports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from procs import SECRET_LABELS, SECRETS

LOGDIRS = pytest.StashKey[list[Path]]()
WORKER_HITS = "mitm407_secret_hits"  # key in xdist's workeroutput
_WORKER_HITS_KEY = pytest.StashKey[list["Hit"]]()
REPORT_NODEID = "secret scan of the session's logs"


@dataclass(frozen=True)
class Hit:
    """A secret found in a log: where, and whose (a label such as "password of 'oscar'")."""

    path: str
    line: int
    label: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.label}"


def find_secrets(directories: Iterable[Path], secrets: Mapping[str, str]) -> list[Hit]:
    """Every line of every file below ``directories`` that contains a secret (``secrets``: secret -> label)."""
    hits = []
    for directory in directories:
        for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
            text = path.read_bytes().decode("utf-8", "replace")
            for number, line in enumerate(text.splitlines(), 1):
                hits += [Hit(str(path), number, label) for secret, label in secrets.items() if secret in line]
    return sorted(set(hits), key=lambda h: (h.path, h.line, h.label))


@pytest.fixture(scope="session")
def logdir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every process log goes; the session's secret scan reads all of it."""
    path = tmp_path_factory.mktemp("logs")
    request.config.stash.setdefault(LOGDIRS, []).append(path)
    return path


def hits_to_report(hits: list[Hit]) -> pytest.CollectReport:
    lines = [f"{len(hits)} secret(s) that tests registered with procs.register_secret appear in logs:"]
    lines += [f"  {hit}" for hit in hits]
    return pytest.CollectReport(REPORT_NODEID, "failed", "\n".join(lines), [])


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    secrets = {secret: SECRET_LABELS.get(secret, "a registered secret") for secret in SECRETS}
    hits = find_secrets(config.stash.get(LOGDIRS, []), secrets)
    if hasattr(config, "workeroutput"):  # an xdist worker: the controller reports
        config.workeroutput[WORKER_HITS] = [(h.path, h.line, h.label) for h in hits]
        return
    hits += config.stash.get(_WORKER_HITS_KEY, [])
    if hits:
        config.hook.pytest_collectreport(report=hits_to_report(hits))
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED



@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # noqa: ANN001 (xdist's WorkerController)
    """xdist controller: collect the hits a worker found in its own logs."""
    found = getattr(node, "workeroutput", {}).get(WORKER_HITS, [])
    node.config.stash.setdefault(_WORKER_HITS_KEY, []).extend(Hit(*hit) for hit in found)
