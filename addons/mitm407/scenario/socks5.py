"""The scenario's ``socks5:`` key: what this proxy asks of SOCKS5 clients (``--mode socks5``).

A SOCKS5 server picks one of the methods the client offers (RFC 1928 §3).
``auth: required`` offers only username/password (RFC 1929): a client that
cannot send it (Chromium, hence Playwright) gets "no acceptable methods".
``auth: none`` offers only "no authentication": a client that insists on
sending a password gets the same refusal, as from a real open SOCKS server.
"""

from __future__ import annotations

from dataclasses import dataclass

from mitm407.core.yamlnodes import Mapping

REQUIRED = "required"
NONE = "none"
SOCKS5_AUTH = (REQUIRED, NONE)


@dataclass(frozen=True)
class Socks5Config:
    auth: str = REQUIRED  # only read when the proxy runs in socks5 mode

    @property
    def wants_password(self) -> bool:
        return self.auth == REQUIRED


def parse_socks5(section: Mapping | None) -> Socks5Config:
    if section is None:
        return Socks5Config()
    config = Socks5Config(auth=section.choice("auth", SOCKS5_AUTH, REQUIRED))
    section.finish()
    return config
