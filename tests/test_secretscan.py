"""The session's secret scan (tests/secretscan.py) and the e2e marker check (tests/conftest.py).

The scan itself runs when every session finishes; these tests check that it can
fail: a pytest run (a real subprocess, hence e2e) over a tiny test that writes a
registered secret into its ``logdir`` must exit non-zero and name file and line,
without printing the secret, whatever ``-k`` selects.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from procs import REPO, run
from secretscan import Hit, find_secrets

TESTS = Path(__file__).resolve().parent
CANARY = "s3cr3t-canary-7"

TINY = f'''
from procs import register_secret

register_secret("eve", "{CANARY}")


def test_writes_a_log(logdir):
    (logdir / "proc.log").write_text("starting\\nleaked {{}} here\\n".format(LEAK))


def test_other():
    pass
'''


def test_scanner_names_file_line_and_owner(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.log").write_text("fine\nline with pl4nted-secret inside\n")
    hits = find_secrets([tmp_path], {"pl4nted-secret": "password of 'pat'", "absent": "password of 'abe'"})
    assert hits == [Hit(str(tmp_path / "sub" / "x.log"), 2, "password of 'pat'")]
    assert "pl4nted" not in str(hits[0])


def tiny_session(tmp_path: Path, leak: str, *args: str):
    """``pytest -p secretscan`` in a subprocess over a tiny test that writes ``leak`` to a log."""
    (tmp_path / "test_tiny.py").write_text(f"LEAK = {leak!r}\n" + textwrap.dedent(TINY))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO / "addons")])}
    args_ = [sys.executable, "-m", "pytest", "-p", "secretscan", "-p", "no:cacheprovider", "-q", "-o", "addopts=",
             "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "tmp"), *args, str(tmp_path / "test_tiny.py")]
    return run(args_, timeout=120, cwd=tmp_path, env=env)


@pytest.mark.e2e
@pytest.mark.parametrize("select", [[], ["-k", "writes"], ["-n", "2"]], ids=["all", "-k", "xdist"])
def test_a_leak_fails_the_session_without_printing_the_secret(tmp_path, select):
    done = tiny_session(tmp_path, CANARY, *select)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "proc.log:2: password of 'eve'" in output and "secret scan of the session's logs" in output
    assert CANARY not in output


@pytest.mark.e2e
def test_a_clean_session_passes(tmp_path):
    done = tiny_session(tmp_path, "nothing secret")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.e2e
def test_a_leak_in_a_deselected_test_is_not_blamed(tmp_path):
    """Only logs the session wrote count: a test that did not run wrote nothing."""
    done = tiny_session(tmp_path, CANARY, "-k", "other")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_process_from_an_unmarked_test_is_refused():
    """The e2e marker check (conftest's audit hook): this test is not marked e2e."""
    with pytest.raises(RuntimeError, match=r"test_secretscan.py::.* starts a process .* not marked e2e"):
        run([sys.executable, "-c", "pass"])


@pytest.mark.e2e
def test_a_process_from_a_marked_test_is_allowed():
    assert run([sys.executable, "-c", "print('ran')"]).stdout == "ran\n"
