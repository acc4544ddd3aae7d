"""Read hop logs in tests: every line must validate against the shipped JSON Schema."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

from mitm407.core.flowmeta import auth_log
from mitm407.core.results import AuthResult, Result

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "addons" / "mitm407" / "hoplog" / "schema.json"
VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def auth_of(metadata: Mapping[str, Any]) -> AuthResult | None:
    """The ``AuthResult`` a flow's auth record (the hop log's ``auth``) keeps, or None: for assertions on it."""
    record = auth_log(metadata)
    if record is None:
        return None
    try:
        result = Result(record.get("result"))
    except ValueError:
        return None
    return AuthResult(result, str(record.get("reason") or ""), record.get("scheme"), record.get("user"))


def read_hop_log(path: Path) -> list[dict]:
    """All records of a hop log, each validated against the schema (a bad line fails the test)."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        record = json.loads(line)
        errors = sorted(VALIDATOR.iter_errors(record), key=lambda e: list(e.path))
        assert not errors, f"{path}:{number}: {errors[0].message} at {list(errors[0].path)}"
        records.append(record)
    return records


def wait_for_record(path: Path, predicate, timeout: float = 10.0) -> dict:
    """The first record matching ``predicate``; lines are written when flows end, so poll."""
    deadline = time.monotonic() + timeout
    while True:
        for record in read_hop_log(path):
            if predicate(record):
                return record
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching record in {path}:\n" + "\n".join(map(str, read_hop_log(path))))
        time.sleep(0.05)


def answered_407_flow():
    """A flow this proxy answered with a 407 for missing credentials, as the addon leaves it for the hop log."""
    from mitmproxy.test import tflow

    from mitm407.core.flowmeta import META_ANSWERED, META_AUTH, auth_record
    from mitm407.core.results import AuthResult, Result

    flow = tflow.tflow(resp=True)
    flow.response.status_code = 407
    flow.metadata[META_ANSWERED] = True
    flow.metadata[META_AUTH] = auth_record(AuthResult(Result.MISSING, "no Proxy-Authorization header"))
    return flow
