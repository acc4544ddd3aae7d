"""Scheme registry: scenario name -> module that provides ``SPEC``.

Modules are imported on first use so that a scenario without NTLM never
imports pyspnego. A new scheme is one module plus one line here.
"""

from __future__ import annotations

import importlib

from mitm407.schemes.base import SchemeSpec

SCHEME_MODULES: dict[str, str] = {
    "basic": "basic",
    "digest": "digest",
    "ntlm": "ntlm",
    "negotiate": "negotiate",
}

SCHEME_NAMES = tuple(SCHEME_MODULES)


def spec_for(name: str) -> SchemeSpec:
    module = importlib.import_module(f".{SCHEME_MODULES[name]}", __name__)
    return module.SPEC
