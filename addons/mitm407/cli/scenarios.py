"""``mitm407 scenarios [NAME]``: list the shipped scenarios, or print one's header comment.

The header comment of a scenario file is its documentation (what it simulates,
the client bug it reproduces, how to run it, what to expect), so this command
only reads it; nothing here duplicates the text.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from mitm407.core.problems import did_you_mean
from mitm407.scenario.load import repo_scenario_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenarios", help="list shipped scenarios; with NAME, print its documentation")
    p.add_argument("name", nargs="?", metavar="NAME", help="a shipped scenario (file name without .yaml)")
    p.set_defaults(func=run)


def shipped_scenarios() -> dict[str, Path]:
    return {path.stem: path for path in sorted(repo_scenario_dir().glob("*.yaml"), key=lambda p: p.stem)}


def header_comment(text: str) -> str:
    """The leading ``#`` lines of a file, without the ``# `` prefix."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(lines)


# ``mitmdump -s addons/proxyauth.py --set scenario=NAME [more]`` in a header comment: a checkout's command line.
CHECKOUT_COMMAND = re.compile(
    r"mitmdump -s addons/proxyauth\.py --set scenario=(?:scenarios/)?([\w.-]+?)(?:\.yaml)?(?=\s|$)"
)


def for_installed_package(text: str) -> str:
    """Header text with checkout command lines turned into ``mitm407 run NAME``.

    An installed package has no ``addons/proxyauth.py`` beside the user; ``mitm407
    run`` starts the same mitmdump with the packaged script (other arguments kept).
    """
    text = CHECKOUT_COMMAND.sub(lambda m: f"mitm407 run {m.group(1)}", text)
    return text.replace("mitmdump -s addons/proxyauth.py", "mitm407 run")


def in_checkout(path: Path) -> bool:
    """Is this scenario file part of a checkout (``addons/`` beside ``scenarios/``)?"""
    return (path.parent.parent / "addons" / "proxyauth.py").is_file()


def description(path: Path) -> str:
    """The scenario's ``description:``, read without validating the whole file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return "(unreadable)"
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def run(args: argparse.Namespace) -> int:
    scenarios = shipped_scenarios()
    if args.name is None:
        width = max(map(len, scenarios), default=0)
        for name, path in scenarios.items():
            print(f"{name:<{width}}  {description(path)}")
        return 0
    path = scenarios.get(args.name.removesuffix(".yaml"))
    if path is None:
        print(f"mitm407: no shipped scenario '{args.name}' ({did_you_mean(args.name, scenarios)})", file=sys.stderr)
        return 1
    header = header_comment(path.read_text(encoding="utf-8"))
    print(header if in_checkout(path) else for_installed_package(header))
    print(f"\nFile: {path}")
    return 0
