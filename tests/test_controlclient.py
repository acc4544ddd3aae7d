"""The control API client's pure parts: addresses, requests, error messages (e2e: test_pytest_plugin.py)."""

from __future__ import annotations

import json

import pytest

from mitm407.proxy.controlclient import ControlEndpoint, build_request, error_message, json_body


def test_address_brackets_ipv6_literals_only():
    assert ControlEndpoint(8081).address == "127.0.0.1:8081"
    assert ControlEndpoint(8081, "::1").address == "[::1]:8081"
    assert ControlEndpoint(8081, "localhost").address == "localhost:8081"


def test_request_method_path_query_body_and_token():
    request = build_request(ControlEndpoint(8081, token="t0k"), "lock", {"user": "a b"})
    assert (request.get_method(), request.full_url) == ("POST", "http://127.0.0.1:8081/lock?user=a+b")
    assert request.get_header("Authorization") == "Bearer t0k" and request.data is None
    request = build_request(ControlEndpoint(8081), "advance", body=json_body({"advance": 61}))
    assert request.full_url.endswith("/clock") and json.loads(request.data) == {"advance": 61}
    assert request.get_header("Content-type") == "application/json" and not request.has_header("Authorization")
    assert "t0k" not in repr(ControlEndpoint(8081, token="t0k"))
    with pytest.raises(ValueError, match="status takes no user parameter"):
        build_request(ControlEndpoint(8081), "status", {"user": "a"})


def test_error_message_is_the_api_line_with_scenario_problems_below():
    request = build_request(ControlEndpoint(8081), "scenario", body=json_body({"name": "x"}))
    answer = {"error": "invalid scenario; the running one is unchanged",
              "problems": [{"file": "s.yaml", "line": 3, "col": 5, "message": "unknown scheme", "hint": "basic?"}]}
    assert error_message(request, 400, answer, b"") == (
        "PUT /scenario: 400 invalid scenario; the running one is unchanged\n  s.yaml:3:5: unknown scheme (basic?)"
    )
    not_ours = b"<html>\nBad gateway</html>"  # another server on the port: its first line
    assert error_message(request, 502, None, not_ours) == "PUT /scenario: 502 <html>"
    assert error_message(request, 500, None, b"") == "PUT /scenario: 500 (empty answer)"
