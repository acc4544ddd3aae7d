"""The ``hop_name`` option, registered in one place for every mitm407 addon.

Both entry scripts (``proxyauth.py`` and ``hoplog.py``) may run alone or
together; mitmproxy ignores a second ``add_option`` with the very same
signature, so every addon calls this function and the option exists once.
"""

from __future__ import annotations

from typing import Any

HOP_NAME_HELP = "Name of this proxy hop in 407 bodies, Via, Proxy-Status and the hop log."


def add_hop_name_option(loader: Any) -> None:
    loader.add_option("hop_name", str, "mitm407", HOP_NAME_HELP)
