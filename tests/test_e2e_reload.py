"""Scenario loading and reloading against a real mitmdump: never fails open, never dies.

A deep file copied over a live scenario, a half-written file, a FIFO as a
``file:`` secret, a huge htpasswd, a missing bcrypt: each ends in a clear
``file:line:col`` error or a clean load, the proxy keeps serving with its last
good scenario, and later edits still load.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mitmproxy.version import VERSION

from procs import MITMDUMP, PROXYAUTH, REPO, curl, mitm407_cli, register_secret, run

pytestmark = pytest.mark.e2e
MITMPROXY_MAJOR = int(VERSION.split(".")[0])

FIRST, SECOND = register_secret("carol", "first-Pass-1"), register_secret("carol", "second-Pass-2")


def scenario(password: str, extra: str = "") -> str:
    return f'version: 1\nname: live\nusers:\n  carol: "{password}"\n{extra}'


def start(factory, path: Path, **options: str):
    """mitmdump on ``path``, once the scenario is loaded (the port may listen before the script is)."""
    dump = factory(options={"scenario": str(path), "scenario_reload": "1", **options})
    dump.wait_for_log("mitm407: scenario 'live'")
    return dump


def status(dump, password: str, url: str) -> int:
    result = curl("-x", dump.proxy_url("carol", password), url)
    return int(result.stdout.rsplit("\n", 1)[-1])


def start_once(path: Path, confdir: Path, **kwargs) -> subprocess.CompletedProcess:
    """mitmdump on ``path`` that is expected to refuse to start: its exit, with the output."""
    return run([MITMDUMP, "--listen-host", "127.0.0.1", "-p", "0", "-s", PROXYAUTH, "--set", f"scenario={path}",
                "--set", f"confdir={confdir}"], **kwargs)


def count(log: str, text: str) -> int:
    return log.count(text)


def test_deep_file_over_a_live_scenario_keeps_serving_and_a_later_edit_loads(mitmdump_factory, tmp_path, origin):
    """~500 levels used to kill the watcher with a RecursionError: later edits never loaded."""
    path = tmp_path / "live.yaml"
    path.write_text(scenario(FIRST))
    dump = start(mitmdump_factory, path)
    url = origin.url("/reload")
    assert status(dump, FIRST, url) == 200
    deep = tmp_path / "deep.yaml"
    deep.write_text("version: 1\nusers: {carol: x}\nrules: " + "[" * 500 + "]" * 500 + "\n")
    shutil.copyfile(deep, path)  # copied over the live file, in place
    log = dump.wait_for_log("scenario edit rejected")
    assert f"{path}:3:" in log and "nested more than 32 levels deep" in log
    assert status(dump, FIRST, url) == 200  # the last good scenario still serves
    path.write_text(scenario(SECOND))
    dump.wait_for_log("reloaded scenario")
    assert status(dump, SECOND, url) == 200 and status(dump, FIRST, url) == 407
    assert "Traceback" not in dump.log and "RecursionError" not in dump.log


@pytest.mark.parametrize(
    ("half", "rest"),
    [('version: 1\nname: live\nusers:\n  carol: "second-Pa', 'ss-2"\n'),
     ("version: 1\nname: live\nusers:\n  carol: second-Pa", "ss-2\n")],
    ids=["syntax-error-half", "valid-half"],
)
def test_half_written_scenario_is_never_loaded(mitmdump_factory, tmp_path, origin, half, rest):
    """An editor saving in place: the half is neither rejected nor served; the whole loads once.

    No pause between the halves: whether a poll sees the half is timing, so this test only
    asserts what holds either way (one load, of the whole file). The settle window itself
    (a half seen by a poll is not loaded) is tested with a fake clock in tests/test_reload.py.
    """
    path = tmp_path / "live.yaml"
    path.write_text(scenario(FIRST))
    dump = start(mitmdump_factory, path, scenario_settle="3")
    url = origin.url("/half")
    assert status(dump, FIRST, url) == 200
    with open(path, "r+", encoding="utf-8") as f:  # in place: truncate, write half, write the rest
        f.truncate(0)
        f.write(half)
        f.flush()
        f.write(rest)
    log = dump.wait_for_log("reloaded scenario")
    assert count(log, "reloaded scenario") == 1 and "rejected" not in log and "could not be loaded" not in log
    assert status(dump, SECOND, url) == 200
    assert status(dump, "second-Pa", url) == 407 and status(dump, FIRST, url) == 407


def fifo_scenario(folder: Path) -> Path:
    os.mkfifo(folder / "carol.pipe")
    path = folder / "fifo.yaml"
    path.write_text('version: 1\nusers:\n  carol: "file:carol.pipe"\n')
    return path


def test_fifo_secret_is_refused_by_check_and_at_start_up(tmp_path, confdir):
    """Opening a FIFO waits for a writer: `check` and start-up used to hang for ever."""
    path = fifo_scenario(tmp_path)
    pipe = tmp_path / "carol.pipe"
    expected = f"{path}:3:10: cannot read password file {pipe}: a FIFO (named pipe), not a regular file"
    checked = mitm407_cli("check", str(path), timeout=30)
    assert checked.returncode == 1 and checked.stderr.strip() == expected
    started = start_once(path, confdir)
    output = started.stdout + started.stderr
    assert started.returncode != 0 and expected in output and "Traceback" not in output


def test_fifo_secret_on_reload_is_rejected_and_the_proxy_keeps_serving(mitmdump_factory, tmp_path, origin):
    path = tmp_path / "live.yaml"
    path.write_text(scenario(FIRST))
    dump = start(mitmdump_factory, path)
    fifo = fifo_scenario(tmp_path)
    shutil.copyfile(fifo, path)
    log = dump.wait_for_log("scenario edit rejected")
    assert "a FIFO (named pipe), not a regular file" in log
    url = origin.url("/fifo")
    assert status(dump, FIRST, url) == 200
    path.write_text(scenario(SECOND))
    dump.wait_for_log("reloaded scenario")
    assert status(dump, SECOND, url) == 200


def test_requests_are_answered_while_a_huge_htpasswd_loads(mitmdump_factory, tmp_path, origin):
    """Every request sent while the reload runs is answered 200, and the reload then completes.

    How many requests fit in the load depends on the machine's speed, so none is counted;
    that the load runs off the event loop is tested deterministically in tests/test_reload.py.
    """
    (tmp_path / "users.htpasswd").write_text("dave:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")  # dave: "password"
    path = tmp_path / "live.yaml"
    path.write_text(scenario(FIRST, "htpasswd: users.htpasswd\n"))
    dump = start(mitmdump_factory, path)
    url = origin.url("/busy")
    big = tmp_path / "big.htpasswd"
    with open(big, "w") as f:
        f.writelines(f"user{i}:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n" for i in range(500_000))
    os.replace(big, tmp_path / "users.htpasswd")
    dump.wait_for_log("loading")
    deadline = time.monotonic() + 180
    while True:  # at least one request after the load started, then until it has completed
        assert status(dump, FIRST, url) == 200
        if "reloaded scenario" in dump.log:
            break
        assert time.monotonic() < deadline, dump.log[-2000:]
    ok = curl("-x", dump.proxy_url("user499999", "password"), url)
    assert ok.stdout.endswith("200")


@pytest.fixture
def no_bcrypt(tmp_path) -> dict[str, str]:
    """An environment where ``import bcrypt`` fails, as where it was never installed."""
    fake = tmp_path / "no-bcrypt"
    fake.mkdir()
    (fake / "bcrypt.py").write_text("raise ImportError('No module named bcrypt (test stand-in)', name='bcrypt')\n")
    return {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{REPO / 'addons'}"}


def test_without_bcrypt_check_fails_and_mitmdump_refuses_to_start(no_bcrypt, confdir):
    """A bcrypt htpasswd in an environment without bcrypt used to pass `check` and forward wrong passwords."""
    shipped = REPO / "scenarios" / "htpasswd.yaml"
    checked = run([sys.executable, "-m", "mitm407", "check", str(shipped)], env=no_bcrypt)
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert f"{shipped}:" in checked.stderr and "the Python package bcrypt cannot be imported" in checked.stderr
    assert "(pip install bcrypt)" in checked.stderr
    started = start_once(shipped, confdir, env=no_bcrypt)
    output = started.stdout + started.stderr
    assert started.returncode != 0, output
    if MITMPROXY_MAJOR < 12:  # mitmproxy 12 needs bcrypt itself: its own import fails before any addon loads
        assert "the Python package bcrypt cannot be imported" in output and "Traceback" not in output
    fine = run([sys.executable, "-m", "mitm407", "check", str(REPO / "scenarios" / "default.yaml")], env=no_bcrypt)
    assert fine.returncode == 0, fine.stderr  # a scenario without bcrypt hashes does not need it
