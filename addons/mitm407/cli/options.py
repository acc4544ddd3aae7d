"""``mitm407 options``: the addon's mitmproxy options with their help text.

mitmproxy 12 lists script options in ``mitmdump -s addons/proxyauth.py
--options``; mitmproxy 11 loads scripts too late for that, so this command
prints the same text on both.
"""

from __future__ import annotations

import argparse
import textwrap


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("options", help="list mitm407's mitmproxy options (--set NAME=VALUE)")
    p.set_defaults(func=run)


def addon_options() -> list[tuple[str, str, object, str]]:
    """(name, type, default, help) of every option the entry scripts' addons add."""
    from mitmproxy import options
    from mitmproxy.addonmanager import Loader

    from mitm407.entry import all_addons

    opts = options.Options()
    before = set(opts.keys())

    class Master:  # the one attribute Loader needs
        options = opts

    loader = Loader(Master())  # type: ignore[arg-type]
    for addon in all_addons():
        if hasattr(addon, "load"):
            addon.load(loader)
    return [
        (name, opts._options[name].typespec.__name__, opts._options[name].default, opts._options[name].help)
        for name in sorted(set(opts.keys()) - before)
    ]


def run(args: argparse.Namespace) -> int:
    for name, typename, default, help_text in addon_options():
        print(textwrap.indent(textwrap.fill(" ".join(help_text.split()), 76), "# "))
        print(f"# Type {typename}.")
        print(f"{name}: {default!r}\n")
    return 0
