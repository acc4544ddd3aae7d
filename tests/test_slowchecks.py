"""bcrypt off the event loop: the addon's hooks return an awaitable that checks in a worker thread.

In process, with mitmproxy's test flows: which hooks defer, that the decision
is the one the synchronous path makes, one bcrypt per credential however many
requests wait for it, and what happens when the flow or the scenario changes
meanwhile. The real-proxy version (other traffic keeps flowing) is in
tests/test_e2e_slowchecks.py.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import threading
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from mitmproxy.test import taddons, tflow

from hoplogcheck import auth_of
from mitm407.core.flowmeta import META_AUTH
from mitm407.core.results import Result
from mitm407.proxy.addon import Addon
from mitm407.proxy.slowchecks import MAX_WORKERS, worker_count
from mitm407.scenario.load import Scenario, parse_scenario


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def bcrypt_scenario(tmp_path: Path, password: str = "right", extra: str = "") -> Scenario:
    """User 'slow' in an htpasswd file (bcrypt, cost 4: fast tests), 'quick' inline."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    (tmp_path / "users.htpasswd").write_text(f"slow:{hashed}\n", encoding="utf-8")
    text = f"version: 1\nusers: {{quick: pw}}\nhtpasswd: users.htpasswd\nschemes: [basic]\n{extra}"
    return parse_scenario(text, str(tmp_path / "s.yaml"), tmp_path)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread each bcrypt ran on."""
    ran: list[str] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda p, h: ran.append(threading.current_thread().name) or real(p, h))
    return ran


@pytest.fixture
def addon(tmp_path: Path) -> Iterator[Addon]:
    addon = Addon()
    addon.install(bcrypt_scenario(tmp_path))
    with taddons.context(addon):
        yield addon
    addon.slow_checks.close()


def request(user: str, password: str) -> tflow.http.HTTPFlow:
    flow = tflow.tflow()
    flow.request.headers["Proxy-Authorization"] = basic(user, password)
    return flow


def connect(user: str, password: str) -> tflow.http.HTTPFlow:
    flow = tflow.tflow()
    flow.request.method, flow.request.path = "CONNECT", ""
    flow.request.headers["Proxy-Authorization"] = basic(user, password)
    return flow


async def gather(*awaitables) -> None:
    await asyncio.gather(*awaitables)


def status(flow) -> int:
    return 200 if flow.response is None else flow.response.status_code


def installed(tmp_path, extra: str) -> Addon:
    """An addon running the bcrypt scenario plus ``extra`` YAML (faults, rules)."""
    addon = Addon()
    addon.install(bcrypt_scenario(tmp_path, extra=extra))
    return addon


def test_worker_count_leaves_a_core_to_the_event_loop():
    assert [worker_count(n) for n in (None, 1, 2, 3, 4, 64)] == [1, 1, 1, 2, 3, MAX_WORKERS]


def test_only_an_uncached_bcrypt_check_defers(addon, checks):
    fast = request("quick", "pw")
    assert addon.requestheaders(fast) is None and status(fast) == 200  # cleartext: sync as before
    first = request("slow", "right")
    waiting = addon.requestheaders(first)
    assert inspect.isawaitable(waiting) and META_AUTH not in first.metadata and checks == []
    asyncio.run(waiting)
    assert status(first) == 200 and auth_of(first.metadata).result is Result.OK
    assert "Proxy-Authorization" not in first.request.headers
    assert checks and all(name.startswith("mitm407-slowcheck") for name in checks)  # never on the loop
    again = request("slow", "right")
    assert addon.requestheaders(again) is None  # cached: the hot path is sync
    assert auth_of(again.metadata).result is Result.OK and len(checks) == 1
    for value in ("Basic !!", basic("nobody", "x"), "Digest x"):  # no bcrypt would run: no deferral
        flow = tflow.tflow()
        flow.request.headers["Proxy-Authorization"] = value
        assert addon.requestheaders(flow) is None and status(flow) == 407
    assert len(checks) == 1


def test_decisions_match_the_synchronous_path(tmp_path, addon, checks):
    sync = Addon()
    sync.install(bcrypt_scenario(tmp_path))
    attempts = [("slow", "right"), ("slow", "wrong"), ("slow", "")]
    deferred = [request(*a) for a in attempts]
    asyncio.run(gather(*(addon.requestheaders(f) for f in deferred)))
    direct = [request(*a) for a in attempts]
    for flow in direct:
        sync.decide(flow, slow_checks=0)  # the inline path: bcrypt on the calling thread
    assert [status(f) for f in deferred] == [status(f) for f in direct] == [200, 407, 407]
    assert [f.metadata[META_AUTH] for f in deferred] == [f.metadata[META_AUTH] for f in direct]
    assert [f.response.headers.get_all("Proxy-Authenticate") for f in deferred[1:]] == [
        f.response.headers.get_all("Proxy-Authenticate") for f in direct[1:]
    ]


def test_concurrent_requests_with_the_same_credentials_share_one_bcrypt(addon, checks):
    same = [request("slow", "wrong-again") for _ in range(5)]
    other = request("slow", "another-wrong")
    waiting = [addon.requestheaders(f) for f in (*same, other)]
    assert all(inspect.isawaitable(w) for w in waiting)
    asyncio.run(gather(*waiting))
    assert [status(f) for f in (*same, other)] == [407] * 6
    assert len(checks) == 2 and addon.slow_checks.in_flight == 0


def test_connect_defers_and_authenticates_the_tunnel(addon, checks):
    flow = connect("slow", "right")
    waiting = addon.http_connect(flow)
    assert inspect.isawaitable(waiting) and flow not in addon.connects
    asyncio.run(waiting)
    assert flow.response is None and addon.connects[flow].result is Result.OK
    addon.http_connected(flow)  # established: only now its tunnel is trusted
    assert addon.connections[flow.client_conn].tunnel.result is Result.OK
    refused = connect("slow", "wrong")
    asyncio.run(addon.http_connect(refused))
    assert refused.response.status_code == 407 and refused not in addon.connects
    assert refused.client_conn not in addon.connections


def test_a_flow_killed_or_answered_meanwhile_is_not_decided(addon, checks):
    killed, answered = request("slow", "right"), request("slow", "wrong")

    async def scenario() -> None:
        waiting = [addon.requestheaders(killed), addon.requestheaders(answered)]
        tasks = [asyncio.ensure_future(w) for w in waiting]
        await asyncio.sleep(0)  # both hooks now wait for their worker thread
        killed.kill()
        answered.response = tflow.tresp(status_code=502)
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert killed.response is None and META_AUTH not in killed.metadata
    assert answered.response.status_code == 502 and META_AUTH not in answered.metadata
    assert "Proxy-Authorization" in killed.request.headers  # not forwarded, nothing stripped
    assert len(checks) == 2  # the checks still completed and were cached for the next request
    assert addon.requestheaders(request("slow", "right")) is None


def test_a_reload_meanwhile_checks_again_against_the_new_scenario(tmp_path, addon, checks):
    flow = request("slow", "right")

    async def scenario() -> None:
        task = asyncio.ensure_future(addon.requestheaders(flow))
        await asyncio.sleep(0)
        (tmp_path / "new").mkdir()
        addon.install(bcrypt_scenario(tmp_path / "new", password="changed"))  # new schemes, empty caches
        await task

    asyncio.run(scenario())
    assert status(flow) == 407  # decided by the new scenario: the old password no longer passes
    assert len(checks) == 2 and all(name.startswith("mitm407-slowcheck") for name in checks)


def test_lockout_counts_deferred_refusals_as_it_counts_synchronous_ones(tmp_path, checks):
    addon = installed(tmp_path, "faults:\n  - lockout: {failures: 2, seconds: 300, status: 403}\n")
    with taddons.context(addon):
        for password, expected in (("w1", 407), ("w2", 407), ("right", 403)):
            flow = request("slow", password)
            asyncio.run(addon.requestheaders(flow))
            assert status(flow) == expected, password
        assert "locked out" in auth_of(flow.metadata).reason
    addon.slow_checks.close()


def test_rotation_rebuilding_the_schemes_still_decides_correctly(tmp_path, checks):
    rotate = "faults:\n  - rotate: {user: quick, passwords: [p1, p2], requests: 1}\n"
    addon = installed(tmp_path, rotate)
    with taddons.context(addon):
        outcomes = []
        for user, password in (("quick", "p1"), ("slow", "right"), ("quick", "p2"), ("slow", "right")):
            flow = request(user, password)
            waiting = addon.requestheaders(flow)
            if waiting is not None:
                asyncio.run(waiting)
            outcomes.append(status(flow))
    addon.slow_checks.close()
    assert outcomes == [200, 200, 200, 200]


def test_a_request_going_away_does_not_cancel_the_check_others_wait_for(addon, checks):
    leaving, staying = request("slow", "right"), request("slow", "right")

    async def scenario() -> None:
        gone = asyncio.ensure_future(addon.requestheaders(leaving))
        kept = asyncio.ensure_future(addon.requestheaders(staying))
        await asyncio.sleep(0)
        gone.cancel()  # mitmproxy cancels a hook whose client went away
        await kept
        assert gone.cancelled()

    asyncio.run(scenario())
    assert status(staying) == 200 and auth_of(staying.metadata).result is Result.OK
    assert META_AUTH not in leaving.metadata and len(checks) == 1


def test_a_bypass_or_deny_rule_runs_no_bcrypt(tmp_path, checks):
    """Those requests never check credentials: they must not wait for (or cost) a bcrypt either."""
    rules = "rules:\n  - match: {path: /public}\n    auth: none\n  - match: {path: /forbidden}\n    auth: deny\n"
    addon = installed(tmp_path, rules)
    with taddons.context(addon):
        outcomes = []
        for path in ("/public", "/forbidden"):
            flow = request("slow", "right")
            flow.request.path = path
            assert addon.requestheaders(flow) is None
            outcomes.append((status(flow), auth_of(flow.metadata).result))
    addon.slow_checks.close()
    assert outcomes == [(200, Result.BYPASS), (403, Result.DENIED)] and checks == []
