"""The one place that finds mitmdump and the entry scripts (run, capture, chain, demo, matrix)."""

from __future__ import annotations

from pathlib import Path

from mitm407.teach.lab import entry_script, find_mitmdump, mitmdump_command, packaged_script
from procs import REPO


def test_entry_scripts_are_the_checkouts_and_the_package_ships_the_same():
    for name in ("proxyauth", "hoplog", "capture"):
        checkout = REPO / "addons" / f"{name}.py"
        assert entry_script(name) == str(checkout)
        packaged = Path(packaged_script(f"{name}_script.py"))
        # the installed copy builds the same addons as the checkout's script
        last = [line for line in checkout.read_text().splitlines() if line.startswith("addons = ")]
        assert last and last[-1] in packaged.read_text().splitlines(), name


def test_mitmdump_is_found_beside_this_python_first():
    found = find_mitmdump()
    assert found is not None and Path(found).name == "mitmdump"
    assert mitmdump_command("s.py", ["-p", "1"]) == [found, "-s", "s.py", "-p", "1"]
