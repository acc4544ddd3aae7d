"""Runs last (file name): no password or Basic token a test used appears in any log the suite wrote.

Covers everything in the session's ``logdir``: mitmdump output, hop logs,
the chain command's output and Squid's logs. Test modules add their secrets
to ``procs.SECRETS`` with ``register_secret`` when they are imported.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from procs import SECRETS


def find_secrets(directory: Path, secrets: set[str]) -> list[str]:
    """``file: secret-prefix...`` for every secret found in any file below ``directory``."""
    hits = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", "replace")
        hits += [f"{path.relative_to(directory)}: {secret[:3]}..." for secret in sorted(secrets) if secret in text]
    return hits


def test_scanner_finds_a_planted_secret(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.log").write_text("line with pl4nted-secret inside\n")
    assert find_secrets(tmp_path, {"pl4nted-secret", "absent"}) == ["sub/x.log: pl4..."]


def test_no_secret_in_any_log(logdir):
    files = [p for p in logdir.rglob("*") if p.is_file()]
    if not files:
        pytest.skip("no process logs in this session: run it with the whole suite")
    assert SECRETS, "no test registered its secrets (procs.register_secret)"
    assert any(p.suffix == ".jsonl" for p in files) or len(files) < 3
    assert find_secrets(logdir, SECRETS) == []
