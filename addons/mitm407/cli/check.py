"""``mitm407 check FILE...``: validate scenario files, one line per problem."""

from __future__ import annotations

import argparse
import sys

from mitm407.core.files import shown
from mitm407.core.problems import Problem, ScenarioError
from mitm407.scenario.load import load_scenario, resolve_scenario_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="validate scenario files (file:line:col: problem)")
    p.add_argument("files", nargs="+", metavar="FILE", help="scenario YAML files or shipped scenario names")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    failed = 0
    for name in args.files:
        path = resolve_scenario_path(name)
        try:
            scenario = load_scenario(path)
        except ScenarioError as e:
            failed += 1
            for problem in e.problems:
                print(problem, file=sys.stderr)
            continue
        except Exception as e:  # noqa: BLE001 (a bug in the loader: still one line, never a traceback)
            failed += 1
            print(Problem(shown(path), 1, 1, f"cannot load scenario: {type(e).__name__}: {e}"), file=sys.stderr)
            continue
        print(f"{path}: ok ({scenario.name}: {len(scenario.users)} users, schemes {', '.join(scenario.schemes)})")
    return 1 if failed else 0
