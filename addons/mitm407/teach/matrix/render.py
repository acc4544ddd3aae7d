"""The matrix as Markdown (docs/compat.md) and as a self-contained HTML page.

Both start with the "generated, do not edit" line that says when and where
the run happened: the observed outcomes depend on the machine's clients.
A failing cell links the scenario that reproduces it; a known client
limitation gets a numbered note with its public reference.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator
from pathlib import Path

from mitm407.teach.matrix.runner import FAIL, Matrix, Row

INTRO = (
    "Each row is a real client (and its version) as found on the machine named above; each column a case: a "
    "scenario from `scenarios/` and how the client is set up. A cell is what the client itself reported: `ok`, "
    "`ok (answered 407)` when the proxy saw the client wait for the challenge first, or `fails (status, exit "
    "code): the client's own error`, linking the scenario that reproduces it. `not installed`: the client is "
    "missing here; `n/a (scenario not available)`: the case's scenario file is not in this checkout yet."
)


def notes_of(matrix: Matrix) -> dict[str, int]:
    """Each distinct note, numbered in order of first appearance."""
    numbers: dict[str, int] = {}
    for row in matrix.rows:
        for case in matrix.cases:
            note = row.cells[case.id].note
            if note and note not in numbers:
                numbers[note] = len(numbers) + 1
    return numbers


def row_cells(
    matrix: Matrix, row: Row, notes: dict[str, int], out_dir: Path, repo: Path
) -> Iterator[tuple[str, str, str | None, int | None]]:
    """(kind, text, link or None, note number or None) of each cell of ``row``, in column order."""
    for case in matrix.cases:
        cell = row.cells[case.id]
        link = relative_link(cell.link, out_dir, repo) if cell.kind == FAIL and cell.link else None
        yield cell.kind, cell.text, link, notes.get(cell.note) if cell.note else None


def relative_link(target: str, out_dir: Path, repo: Path) -> str:
    return os.path.relpath(repo / target, out_dir).replace(os.sep, "/")


def md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(matrix: Matrix, out_dir: Path, repo: Path) -> str:
    notes = notes_of(matrix)
    lines = [
        f"<!-- {matrix.generated} -->",
        "# Client compatibility matrix",
        "",
        f"_{matrix.generated}_",
        "",
        INTRO,
        "",
        "| client | " + " | ".join(md_escape(c.title) for c in matrix.cases) + " |",
        "|---" * (len(matrix.cases) + 1) + "|",
    ]
    for row in matrix.rows:
        cells = []
        for _kind, text, link, note in row_cells(matrix, row, notes, out_dir, repo):
            text = f"[{md_escape(text)}]({link})" if link else md_escape(text)
            cells.append(f"{text} [{note}]" if note else text)
        lines.append(f"| {md_escape(row.label)} | " + " | ".join(cells) + " |")
    lines += ["", "## Cases", ""]
    for case in matrix.cases:
        who = f"user `{case.user}`" if case.user else "no credentials"
        scenario = f"`{case.scenario}`"
        if (repo / "scenarios" / case.scenario).exists():
            scenario = f"[{scenario}]({relative_link(f'scenarios/{case.scenario}', out_dir, repo)})"
        else:
            scenario += " (not available)"
        lines.append(f"- **{case.title}**: {scenario}, {who}, expects {case.expect}. {case.explain}")
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"{n}. {note}" for note, n in notes.items()]
    return "\n".join(lines) + "\n"


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .35em .5em; vertical-align: top; max-width: 18em; }
th { background: #f0f0f0; text-align: left; }
td.ok { background: #e3f6e3; } td.fail { background: #fde2e1; }
td.missing, td.na { background: #f4f4f4; color: #777; }
.generated { color: #666; font-style: italic; }
"""


def esc(text: str) -> str:
    """HTML-escaped, with Markdown `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render_html(matrix: Matrix, out_dir: Path, repo: Path) -> str:
    notes = notes_of(matrix)
    head = "".join(f"<th>{esc(c.title)}</th>" for c in matrix.cases)
    body = []
    for row in matrix.rows:
        tds = []
        for kind, text, link, note in row_cells(matrix, row, notes, out_dir, repo):
            text = f'<a href="{html.escape(link)}">{esc(text)}</a>' if link else esc(text)
            tds.append(f'<td class="{kind}">{text}{f" <sup>[{note}]</sup>" if note else ""}</td>')
        body.append(f"<tr><th>{esc(row.label)}</th>{''.join(tds)}</tr>")
    cases = "".join(
        f"<li><b>{esc(c.title)}</b>: <code>{esc(c.scenario)}</code>, "
        f"{esc('user ' + c.user) if c.user else 'no credentials'}, expects {c.expect}. {esc(c.explain)}</li>"
        for c in matrix.cases
    )
    note_items = "".join(f"<li>{esc(note)}</li>" for note in notes)
    return (
        f"<!DOCTYPE html>\n<!-- {html.escape(matrix.generated)} -->\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>mitm407 client compatibility</title><style>{STYLE}</style></head><body>"
        f"<h1>Client compatibility matrix</h1><p class=\"generated\">{esc(matrix.generated)}</p>"
        f"<p>{esc(INTRO)}</p><table><thead><tr><th>client</th>{head}</tr></thead><tbody>{''.join(body)}"
        f"</tbody></table><h2>Cases</h2><ul>{cases}</ul>"
        + (f"<h2>Notes</h2><ol>{note_items}</ol>" if notes else "")
        + "</body></html>\n"
    )
