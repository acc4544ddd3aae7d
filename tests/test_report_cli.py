"""``mitm407 report`` on a file that is not a hop log: a clear failure, not "0 flows" and success."""

from __future__ import annotations

import json

import pytest

from procs import mitm407_cli

pytestmark = pytest.mark.e2e  # every test runs the mitm407 command


@pytest.mark.parametrize(
    ("content", "what"),
    [("not json\n[1, 2]\n", "2 lines, none a hop-log record (a JSON object)"), ("", "it is empty"),
     ("\n\n", "it is empty")],
)
@pytest.mark.parametrize("fmt", [[], ["--format", "json"], ["--html"]], ids=["text", "json", "html"])
def test_report_without_a_readable_line_fails(tmp_path, content, what, fmt):
    path = tmp_path / "wrong.log"
    path.write_text(content)
    result = mitm407_cli("report", *fmt, str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"mitm407 report: no readable hop-log line in {path}: {what}"
    assert result.stdout == ""


def test_report_with_one_readable_line_among_bad_ones_succeeds(tmp_path):
    path = tmp_path / "hop.log"
    path.write_text("garbage\n" + json.dumps({"v": 1, "hop": "mitm407", "status": 407}) + "\n")
    result = mitm407_cli("report", str(path))
    assert result.returncode == 0, result.stderr
    assert "1 flows, 1 unreadable lines" in result.stdout
