"""The keys mitm407 writes in ``flow.metadata``, and the plain values under them.

mitmproxy saves ``flow.metadata`` with every flow (``-w``, mitmweb's save): a
value its serializer does not know (a dataclass) makes it drop the whole flow
("unserializable object"). So only dicts, lists, strings, numbers and bools
go here; richer objects live in the addons' own side tables. The auth addon
writes these keys and the hop log reads them: both import this module, so
the hop log never imports the auth addon.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mitm407.core.results import AuthResult

META_AUTH = "mitm407.auth"  # AuthResult.as_log() of the flow: {scheme, user, result, reason} (never a secret)
META_ANSWERED = "mitm407.answered"  # True: this proxy generated the response
META_RULE = "mitm407.rule"  # label of the rule that applied, if any
META_SHAPED = "mitm407.shaped"  # True: the answer is a scenario's exact response shape: add no header to it
META_FAULT = "mitm407.fault"  # faults that fired on the flow: [{"name": ..., "reason": ...}]
META_PORTAL_FORM = "mitm407.portal_form"  # True: a login form post the portal answers (proxy/portal.py), not the gate


def auth_record(auth: AuthResult) -> dict[str, str | None]:
    """What ``META_AUTH`` holds: the hop log's ``auth`` object."""
    return auth.as_log()


def auth_log(metadata: Mapping[str, Any]) -> Mapping[str, str | None] | None:
    """The ``META_AUTH`` record as stored (the hop log writes it as is), or None."""
    record = metadata.get(META_AUTH)
    return record if isinstance(record, Mapping) else None

