"""What every benchmark script needs: the test helpers, CPU pinning, CPU time, RSS, medians.

The scripts reuse ``tests/procs.py`` (mitmdump start/stop, free ports) rather
than a second copy of it. Throughput on a shared machine is measured twice:
wall-clock requests per second (noisy) and requests per CPU-second of the
proxy process (stable within a few percent when the proxy has a core of its
own), always as ratios to a baseline measured in the same run.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "addons"))
sys.path.insert(0, str(REPO / "tests"))

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROXY_CPU, LOAD_CPU = {0}, {1}  # the proxy gets core 0; origin and load generator core 1


def can_pin() -> bool:
    return (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (threads started later inherit it), like ``taskset -a -p``."""
    if not can_pin():
        return
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError, PermissionError):  # a thread that just ended
            os.sched_setaffinity(int(task), cpus)


def taskset(cpus: set[int]) -> list[str]:
    """A command prefix that starts a program on ``cpus`` (empty when pinning is impossible)."""
    return ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if can_pin() else []


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat`` utime + stime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size now (``/proc/PID/statm``)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def median(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


def machine() -> dict[str, object]:
    """Where and when a result was measured (the README table cites it)."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        import mitmproxy.version

        mitmproxy_version = mitmproxy.version.VERSION
    except ImportError:
        mitmproxy_version = "?"
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "host": platform.node(),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "mitmproxy": mitmproxy_version,
        "loadavg": os.getloadavg()[0],
    }
