"""The advanceable clock (core/clock.py) with a fake base clock, and a gate reading it."""

from __future__ import annotations

import base64
import math

import pytest

from digestclient import answer as digest_answer
from digestclient import params_of
from mitm407.core.clock import MAX_ADVANCE, MAX_OFFSET, Clock, parse_advance, parse_advance_text, seconds_text
from mitm407.core.facts import RequestFacts
from mitm407.core.results import Result
from mitm407.gate.gate import Gate, GateRequest, Kind
from mitm407.scenario.load import parse_scenario


class FakeBase:
    """A base clock that moves only when told (``time.monotonic`` stand-in)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.value = now

    def __call__(self) -> float:
        return self.value


def test_now_is_the_base_plus_the_offset():
    base = FakeBase()
    clock = Clock(base)
    assert clock.now() == 1000.0 and clock.offset == 0.0
    assert clock.advance(90) == 90.0
    assert clock.now() == 1090.0
    base.value += 5  # real time passes as well
    assert clock.now() == 1095.0
    assert clock.advance(0.5) == 90.5 and clock.now() == 1095.5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "more than 0"),
        (-1, "more than 0"),
        (-0.0, "more than 0"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        (-math.inf, "finite"),
        (MAX_ADVANCE + 1, "at most"),
        (10**400, "at most"),  # a huge JSON integer: compared, never converted to float (OverflowError)
        (True, "a number"),
        ("90", "a number"),
        (None, "a number"),
        ([90], "a number"),
    ],
)
def test_bad_steps_are_refused_and_leave_the_offset_alone(value, message):
    clock = Clock(FakeBase())
    clock.advance(10)
    with pytest.raises(ValueError, match=message):
        clock.advance(value)
    assert clock.offset == 10.0


def test_the_total_offset_is_bounded():
    clock = Clock(FakeBase())
    while clock.offset + MAX_ADVANCE <= MAX_OFFSET:
        clock.advance(MAX_ADVANCE)
    with pytest.raises(ValueError, match="already .* ahead"):
        clock.advance(MAX_ADVANCE)
    assert clock.offset <= MAX_OFFSET


def test_text_arguments():
    assert parse_advance_text("90") == 90.0 and parse_advance_text(" 1.5 ") == 1.5
    assert parse_advance(MAX_ADVANCE) == float(MAX_ADVANCE)
    for text in ("", "ninety", "nan", "inf", "-5", "0"):
        with pytest.raises(ValueError):
            parse_advance_text(text)


def test_seconds_text():
    assert [seconds_text(s) for s in (90.0, 1.5, 0.25, 315360000.0)] == ["90", "1.5", "0.25", "315360000"]


# -- a gate on the clock: what the control API's POST /clock changes ------------------------------

FACTS = RequestFacts("GET", "http://origin.test/page", "origin.test", 80, "/page", "127.0.0.1", "c1")


def gate_on(clock: Clock, tmp_path, text: str) -> Gate:
    scenario = parse_scenario("version: 1\nusers: {u: pw}\n" + text, str(tmp_path / "s.yaml"), tmp_path)
    return Gate(scenario, clock.now)


def test_advancing_makes_a_digest_nonce_stale(tmp_path):
    clock = Clock(FakeBase())
    g = gate_on(clock, tmp_path, "schemes: [digest]\ndigest: {algorithms: [MD5], qop: [auth], nonce_ttl: 60}\n")
    challenge = g.decide(GateRequest(FACTS, [])).answer
    [value] = [v for k, v in challenge.headers if k == "Proxy-Authenticate"]
    params = params_of(value)

    def credentials(nc: str) -> str:
        return "Digest " + digest_answer(
            user="u", password="pw", realm=params["realm"], nonce=params["nonce"], uri=FACTS.target, nc=nc
        )

    assert g.decide(GateRequest(FACTS, [credentials("00000001")])).auth.result is Result.OK
    clock.advance(61)  # no real time passed (the base clock did not move)
    stale = g.decide(GateRequest(FACTS, [credentials("00000002")]))
    assert stale.auth.result is Result.STALE and "nonce expired" in stale.auth.reason
    assert any(k == "Proxy-Authenticate" and v.endswith("stale=true") for k, v in stale.answer.headers)


def test_advancing_ends_a_lockout_window(tmp_path):
    clock = Clock(FakeBase())
    g = gate_on(clock, tmp_path, "schemes: [basic]\nfaults: [{lockout: {failures: 1, seconds: 300}}]\n")

    def basic(password: str) -> str:
        return "Basic " + base64.b64encode(f"u:{password}".encode()).decode()

    g.decide(GateRequest(FACTS, [basic("wrong")]))
    assert g.decide(GateRequest(FACTS, [basic("pw")])).answer.status == 403  # locked out
    clock.advance(299)
    assert g.decide(GateRequest(FACTS, [basic("pw")])).answer.status == 403  # one second left
    clock.advance(2)
    assert g.decide(GateRequest(FACTS, [basic("pw")])).kind is Kind.FORWARD


def test_a_clock_that_raises_fails_closed(tmp_path):
    """The clock is read on the decision path: if reading it raises, the answer is a 500, never a forward."""
    from mitmproxy.test import tflow

    from mitm407.core.flowmeta import META_AUTH
    from mitm407.proxy.addon import Addon

    auth = Addon()
    auth.install(parse_scenario("version: 1\nusers: {ana: clock-pw}\n", str(tmp_path / "s.yaml"), tmp_path))

    def broken() -> float:
        raise OSError("no clock")

    auth.clock.base = broken
    flow = tflow.tflow()
    flow.request.url = "http://127.0.0.1:8000/x"
    flow.request.headers["Proxy-Authorization"] = "Basic " + base64.b64encode(b"ana:clock-pw").decode()
    assert auth.requestheaders(flow) is None
    assert flow.response is not None and flow.response.status_code == 500
    assert flow.metadata[META_AUTH]["result"] == "error"
