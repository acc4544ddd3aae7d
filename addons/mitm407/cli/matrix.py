"""``mitm407 matrix``: run real clients against scenarios, write the compatibility tables.

A user-facing command rather than a dev script: what matters is how the
clients on *your* machine behave against a proxy, so anyone can regenerate
the matrix for their own curl, git, Java... The committed docs/compat.md is
one such run (``make matrix``), and says where and when it was made.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("matrix", help="run real clients through the proxy; write docs/compat.md and .html")
    p.add_argument("-o", "--output", default="docs/compat.md", help="Markdown file (default docs/compat.md)")
    p.add_argument("--html", default=None, help="HTML file (default: the Markdown path with .html)")
    p.add_argument("--clients", help="comma-separated client ids (default: all)")
    p.add_argument("--cases", help="comma-separated case ids (default: all)")
    p.add_argument("--scenario-dir", type=Path, help="where case scenario files are looked up (default: shipped)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def split_ids(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def run(args: argparse.Namespace) -> int:
    from mitm407.scenario.load import repo_scenario_dir
    from mitm407.teach.matrix.cases import select_cases
    from mitm407.teach.matrix.clients import select_clients
    from mitm407.teach.matrix.render import render_html, render_markdown
    from mitm407.teach.matrix.runner import run_matrix

    try:
        clients = select_clients(split_ids(args.clients))
        cases = select_cases(split_ids(args.cases))
    except ValueError as e:
        print(f"mitm407 matrix: {e}", file=sys.stderr)
        return 2
    progress = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    scenario_dir = args.scenario_dir or repo_scenario_dir()
    matrix = run_matrix(clients, cases, scenario_dir, progress)
    md_path = Path(args.output)
    html_path = Path(args.html) if args.html else md_path.with_suffix(".html")
    repo = scenario_dir.resolve().parent
    for path, render in ((md_path, render_markdown), (html_path, render_html)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(matrix, path.resolve().parent, repo), encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 0
