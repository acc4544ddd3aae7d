"""A throwaway CORP.TEST realm for the Kerberos tests, and a gssapi client that makes Negotiate tokens."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs import SECRETS, register_secret

ALICE_PW = register_secret("alice", "Wonder land:42")  # tests/secretscan.py greps every log for them
OTHER_SERVICE_PW = register_secret("HTTP/other", "other-service-key")
SPNEGO_OID = "1.3.6.1.5.5.2"


def need_kerberos() -> None:
    """Skip (with the reason) where the extra or the KDC tools are not installed; `make test` installs both."""
    pytest.importorskip("gssapi", reason="python-gssapi not installed: pip install '.[kerberos]'")
    from mitm407.teach.realm import missing_tools

    if missing_tools():
        pytest.skip(f"{', '.join(missing_tools())} not installed: apt-get install krb5-kdc krb5-admin-server krb5-user")


@contextlib.contextmanager
def running_realm(directory: Path) -> Iterator:
    """The realm, with its client settings in this process's environment (gssapi reads them per call)."""
    from mitm407.teach.realm import Realm

    realm = Realm(directory, {"alice": ALICE_PW, "HTTP/other": OTHER_SERVICE_PW})
    saved = {k: os.environ.get(k) for k in realm.env}
    with realm:
        os.environ.update(realm.env)
        try:
            yield realm
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def client_token(service: str = "HTTP@localhost", spnego: bool = True, mutual: bool = True):
    """(base64 token, the client's security context): what a Python client behind the proxy sends."""
    import gssapi

    mech = gssapi.OID.from_int_seq(SPNEGO_OID) if spnego else gssapi.MechType.kerberos
    # python-gssapi asks for mutual authentication when given no flags at all: name one that is not it
    flags = [gssapi.RequirementFlag.mutual_authentication if mutual else gssapi.RequirementFlag.integrity]
    context = gssapi.SecurityContext(
        name=gssapi.Name(service, gssapi.NameType.hostbased_service), mech=mech, usage="initiate", flags=flags
    )
    token = base64.b64encode(context.step()).decode()
    SECRETS.add(token[-40:])  # never in a log: tests/secretscan.py greps for its tail
    return token, context
