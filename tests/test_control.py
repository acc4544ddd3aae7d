"""The control API's pure parts: overrides on verdicts, request parsing, token check; the commands in process."""

from __future__ import annotations

import pytest

from mitm407.core.results import AuthResult, Result
from mitm407.core.verdict import Action, Verdict
from mitm407.gate.overrides import Overrides
from mitm407.proxy.control import advance_of
from mitm407.proxy.controlserver import ControlError, authorized, encode_response, parse_head


def ok(user: str) -> Verdict:
    return Verdict(Action.FORWARD, AuthResult(Result.OK, "valid", "basic", user), None)


def test_expire_challenges_each_accepted_user_once_then_lets_it_in():
    overrides = Overrides()
    assert overrides.apply(ok("alice")) == ok("alice")
    assert overrides.expire_all() == ["alice"] and overrides.expire_all() == []
    refused = overrides.apply(ok("alice"))
    assert refused.action is Action.CHALLENGE and refused.auth.result is Result.BAD_CREDENTIALS
    assert "expired (control API)" in refused.auth.reason
    assert overrides.apply(ok("alice")).action is Action.FORWARD
    assert overrides.apply(ok("bob")).action is Action.FORWARD  # not accepted before the expiry


def test_lock_refuses_until_unlocked_and_leaves_refusals_alone():
    overrides = Overrides()
    overrides.lock("alice")
    assert overrides.apply(ok("alice")).action is Action.CHALLENGE
    missing = Verdict(Action.CHALLENGE, AuthResult(Result.MISSING, "no header"), None)
    assert overrides.apply(missing) is missing
    assert overrides.unlock("alice") and not overrides.unlock("alice")
    assert overrides.apply(ok("alice")).action is Action.FORWARD


def test_user_names_in_reasons_are_escaped():
    overrides = Overrides()
    overrides.lock("ev\x1bil")
    assert "\\x1b" in overrides.apply(ok("ev\x1bil")).auth.reason


@pytest.mark.parametrize(
    "head",
    [b"GET /status\r\n", b"GET /status HTTP/2\r\n", b"GET /status HTTP/1.1\r\nbad header\r\n",
     b"\xff / HTTP/1.1\r\n", b"GET /status HTTP/1.1\r\n Folded: x\r\n"],
)
def test_malformed_heads_are_400(head):
    with pytest.raises(ControlError) as e:
        parse_head(head.rstrip(b"\r\n"))
    assert e.value.status == 400


def test_token_is_checked_and_optional():
    assert authorized({}, "")
    assert not authorized({}, "s")
    assert not authorized({"authorization": "Basic s"}, "s")
    assert authorized({"authorization": "Bearer s"}, "s")


def test_responses_are_json_with_a_length_and_close():
    raw = encode_response(404, {"error": "x"})
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 404 Not Found") and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head and body.startswith(b"{")


def test_commands_are_registered_for_mitmweb_and_the_console(tmp_path):
    from mitmproxy.addons.proxyauth import ProxyAuth
    from mitmproxy.exceptions import CommandError
    from mitmproxy.test import taddons

    from mitm407.proxy.addon import Addon
    from mitm407.proxy.control import Control

    auth = Addon()
    control = Control(auth, lambda: None)
    with taddons.context(ProxyAuth(), auth, control) as tctx:  # (ProxyAuth: its option is read)
        scenario = tmp_path / "s.yaml"
        scenario.write_text("version: 1\nname: s\nrealm: r\nschemes: [basic]\nusers:\n  alice: pw-a\n")
        tctx.configure(auth, scenario=str(scenario))
        commands = tctx.master.commands
        assert commands.call("mitm407.lock", "alice") == "locked: alice"
        assert auth.require_gate().overrides.locked == {"alice"}
        assert commands.call("mitm407.unlock", "alice") == "unlocked: alice"
        assert commands.call("mitm407.expire") == "expired: nobody had authenticated"
        assert commands.call("mitm407.rotate") == "the scenario has no 'rotate' fault"
        assert commands.call("mitm407.reset") == "reset"
        assert commands.call("mitm407.advance", "90") == "clock advanced by 90 s (offset 90 s)"
        assert auth.clock.offset == 90.0
        with pytest.raises(CommandError, match="more than 0 seconds"):
            commands.call("mitm407.advance", "-5")
        tctx.configure(auth, scenario="digest")  # a new scenario (a new gate) keeps the offset
        assert auth.clock.offset == 90.0 and auth.require_gate().faults.clock == auth.clock.now


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "must be JSON"),
        (b"advance=90", "must be JSON"),
        (b"\xff\xfe", "must be JSON"),
        (b"[" * 100_000, "must be JSON"),  # nested past the JSON parser's recursion limit
        (b"90", "nothing else"),
        (b'{"seconds": 90}', "nothing else"),
        (b'{"advance": 90, "also": 1}', "nothing else"),
        (b'{"advance": 0}', "more than 0"),
        (b'{"advance": -3}', "more than 0"),
        (b'{"advance": NaN}', "finite"),
        (b'{"advance": Infinity}', "finite"),
        (b'{"advance": 1e999}', "finite"),
        (b'{"advance": 1e12}', "at most"),
        (b'{"advance": true}', "a number"),
        (b'{"advance": "90"}', "a number"),
        (b'{"advance": null}', "a number"),
    ],
)
def test_clock_bodies_that_are_refused(body, message):
    with pytest.raises(ControlError, match=message) as e:
        advance_of(body)
    assert e.value.status == 400 and "\n" not in str(e.value)


def test_clock_body():
    assert advance_of(b'{"advance": 90}') == 90.0 and advance_of(b' {"advance": 0.25} ') == 0.25


def test_put_scenario_builds_the_new_gate_off_the_event_loop(tmp_path, gate_threads):
    """PUT /scenario reads and builds the scenario in a worker thread; on the loop only the swap runs."""
    import asyncio
    import threading

    from mitm407.proxy.addon import Addon
    from mitm407.proxy.control import Control
    from mitm407.proxy.controlserver import ControlRequest
    from mitm407.scenario.load import parse_scenario

    built_in = gate_threads
    auth = Addon()
    auth.install(parse_scenario("version: 1\nusers: {ana: pw}\n", str(tmp_path / "s.yaml"), tmp_path))
    body = b"version: 1\nname: switched\nusers: {bea: pw2}\n"
    status, answer = asyncio.run(Control(auth, lambda: None).put_scenario(ControlRequest("PUT", "/scenario", {}, body)))
    assert (status, answer["scenario"]) == (200, "switched") and auth.gate.scenario is auth.scenario
    assert len(built_in) == 2 and built_in[1] is not threading.main_thread() and auth._prepared is None
