"""The addon loaded in place of the proxy when mitm407 cannot run: it refuses everything.

A mitmproxy script that fails to import is dropped with a traceback, and
mitmproxy goes on as an open proxy: the opposite of what an authenticating
proxy promises. So the entry script loads this instead. It needs nothing
but mitmproxy: at start-up its one error line makes mitmdump/mitmweb exit
(mitmproxy's ``errorcheck``); loaded later (a script reload), it answers
every request with 503 instead of forwarding it.
"""

from __future__ import annotations

import logging

from mitmproxy import http

logger = logging.getLogger("mitm407")

# What to install for each module mitm407 imports from outside the standard library and mitmproxy.
INSTALL_HINTS = {
    "yaml": "pyyaml",
    "bcrypt": "bcrypt",
    "spnego": "pyspnego",
    "gssapi": "mitm407[kerberos]",
}


def missing_dependency_message(error: ImportError) -> str:
    """One line: which module is missing and how to add it to mitmproxy's environment."""
    module = (error.name or "").split(".")[0]
    package = INSTALL_HINTS.get(module, module or "a dependency")
    return (
        f"mitm407 cannot start: Python module '{module}' is missing from mitmproxy's environment. "
        f"Install mitm407 into it ('pipx inject mitmproxy mitm407', a checkout or wheel path works too; or "
        f"mitmproxy's own pip), or add just '{package}' ('pipx inject mitmproxy {package}')."
    )


class Unavailable:
    """Refuse every request with 503 and say why once; never forward."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def load(self, loader: object) -> None:
        logger.error("%s", self.reason)

    def refuse(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            body = f"503 Service Unavailable\n\n{self.reason}\n".encode()
            flow.response = http.Response.make(503, body, {"Content-Type": "text/plain; charset=utf-8"})

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self.refuse(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.refuse(flow)
