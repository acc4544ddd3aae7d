"""The ``portal:`` key: a login portal instead of (or beside) ``Proxy-Authorization``.

Zscaler, Blue Coat (``authenticate.mode``) and Squid (``authenticate_ip_ttl``)
redirect an unauthenticated browser to a login page served by the proxy; once
the form is filled, the client IP (or a cookie, a "surrogate credential") is
trusted for a while. This module only reads the setting; the behaviour is in
``gate/portal.py`` (pure) and ``proxy/portal.py`` (the login page).
"""

from __future__ import annotations

from dataclasses import dataclass

from mitm407.core.yamlnodes import Mapping, Reader

BY_IP = "ip"  # the client IP address is trusted (Squid authenticate_ip_ttl, Blue Coat form-ip-redirect)
BY_COOKIE = "cookie"  # a cookie set on each origin is trusted (Blue Coat form-cookie-redirect)
PORTAL_BY = (BY_IP, BY_COOKIE)
REDIRECT_STATUSES = (302, 303, 307)
MAX_TTL = 7 * 24 * 3600


@dataclass(frozen=True)
class PortalConfig:
    """The scenario's ``portal:`` section."""

    ttl: float = 600.0  # seconds a successful login is trusted
    by: str = BY_IP  # what is trusted: the client IP address, or a cookie
    status: int = 302  # the redirect to the login page


def parse_portal(reader: Reader, section: Mapping | None) -> PortalConfig | None:
    """Read ``portal:`` (``{ttl: 600, by: ip | cookie, status: 302 | 303 | 307}``); None when absent."""
    if section is None:
        return None
    default = PortalConfig()
    ttl = section.number("ttl", default.ttl, minimum=0.001)
    if ttl is not None and ttl > MAX_TTL:
        reader.error(section.get("ttl") or section.node, f"'ttl' is at most {MAX_TTL} seconds (a week), got {ttl:g}")
    by = section.choice("by", PORTAL_BY, default.by)
    status = section.integer("status", default.status)
    if status is not None and status not in REDIRECT_STATUSES:
        reader.error(section.get("status") or section.node, f"'status' must be one of 302, 303, 307, got {status}")
        status = default.status
    section.finish()
    return PortalConfig(ttl=ttl or default.ttl, by=by, status=status or default.status)
