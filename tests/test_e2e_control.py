"""The control API against a real mitmdump: status, expire, lock, rotate, switch, hops, reset, token, clock, CLI."""

from __future__ import annotations

import json
import socket

import pytest

from digestclient import answer
from mitm407.wire.authparams import parse_challenges
from procs import CONTROL_OPENER as OPENER
from procs import control_api as api
from procs import curl, free_port, mitm407_cli, raw_exchange, register_secret

pytestmark = pytest.mark.e2e

ALICE = register_secret("alice", "control-alice-pw")


def scenario_file(tmp_path, extra: str = "") -> str:
    path = tmp_path / "control.yaml"
    path.write_text(
        "version: 1\nname: control-test\nrealm: ctl\nschemes: [basic]\n"
        f"users:\n  alice: {ALICE}\n  bob: other-pw\n{extra}"
    )
    return str(path)


def start_controlled(mitmdump_factory, scenario: str):
    """mitmdump with ``scenario`` and its control API on a free port (``dump.control_port``)."""
    port = free_port()
    dump = mitmdump_factory(options={"scenario": scenario, "control_port": str(port)})
    dump.wait_for_log("control API on")
    dump.control_port = port
    return dump


@pytest.fixture
def controlled(mitmdump_factory, tmp_path):
    return start_controlled(mitmdump_factory, scenario_file(tmp_path))


def as_alice(dump, origin, path="/c", password=ALICE):
    return curl("-x", dump.proxy_url("alice", password), origin.url(path)).stdout[-3:]


def test_status_names_scenario_users_schemes_and_counts(controlled, origin):
    as_alice(controlled, origin)
    status, body = api(controlled.control_port, "GET", "/status")
    assert status == 200
    assert body["scenario"]["name"] == "control-test" and body["users"] == ["alice", "bob"]
    assert body["schemes"] == ["Basic"] and body["counters"]["by_result"] == {"ok": 1}
    assert ALICE not in json.dumps(body)


def test_expire_challenges_each_accepted_user_once(controlled, origin):
    assert as_alice(controlled, origin) == "200"
    assert api(controlled.control_port, "POST", "/expire") == (200, {"expired": ["alice"]})
    assert as_alice(controlled, origin) == "407"  # the next request is challenged ...
    assert "expired (control API)" in controlled.log
    assert as_alice(controlled, origin) == "200"  # ... and the client that tries again gets in


def test_lock_and_unlock(controlled, origin):
    port = controlled.control_port
    assert api(port, "POST", "/lock?user=alice")[0] == 200
    assert as_alice(controlled, origin) == "407" and "is locked (control API)" in controlled.log
    assert api(port, "POST", "/unlock?user=alice") == (200, {"unlocked": "alice", "was_locked": True})
    assert as_alice(controlled, origin) == "200"
    assert api(port, "POST", "/lock?user=nobody")[0] == 404
    assert api(port, "POST", "/lock")[0] == 400


def test_switch_scenario_by_name_and_refuse_an_invalid_yaml(controlled, origin):
    port = controlled.control_port
    status, body = api(port, "PUT", "/scenario", b"version: 1\nname: broken\nschemes: basic\n")
    assert status == 400 and body["problems"] and {"file", "line", "col", "message"} <= set(body["problems"][0])
    assert api(port, "GET", "/status")[1]["scenario"]["name"] == "control-test"  # unchanged
    assert api(port, "PUT", "/scenario", json.dumps({"name": "digest"}).encode()) == (
        200, {"scenario": "digest", "path": api(port, "GET", "/status")[1]["scenario"]["path"]})
    assert "switched scenario 'control-test' -> 'digest'" in controlled.log and "(control API)" in controlled.log
    assert "Digest" in curl("-i", "-x", controlled.url, origin.url("/d")).stdout


def test_rotate_now_and_409_without_a_rotate_fault(mitmdump_factory, tmp_path, origin):
    port = free_port()
    extra = "faults:\n  - rotate: {user: alice, passwords: [rot-a1, rot-a2], period: 3600}\n"
    dump = mitmdump_factory(options={"scenario": scenario_file(tmp_path, extra), "control_port": str(port)})
    dump.wait_for_log("control API on")
    assert as_alice(dump, origin, password="rot-a1") == "200"
    assert api(port, "POST", "/rotate") == (200, {"rotated": ["alice"]})
    assert as_alice(dump, origin, password="rot-a1") == "407" and as_alice(dump, origin, password="rot-a2") == "200"
    api(port, "PUT", "/scenario", json.dumps({"name": "default"}).encode())
    assert api(port, "POST", "/rotate")[0] == 409


def test_hops_since_and_reset(controlled, origin):
    port = controlled.control_port
    as_alice(controlled, origin, "/one")
    curl("-x", controlled.url, origin.url("/two"))
    status, body = api(port, "GET", "/hops?since=0")
    assert status == 200 and [r["status"] for r in body["records"]] == [200, 407] and body["last"] == 2
    assert [r["n"] for r in api(port, "GET", "/hops?since=1")[1]["records"]] == [2]
    assert api(port, "GET", "/hops?since=x")[0] == 400
    assert api(port, "POST", "/reset") == (200, {"reset": True})
    assert api(port, "GET", "/status")[1]["counters"] == {"decided": 0, "by_result": {}}


def test_ca_pem_and_malformed_requests(controlled):
    port = controlled.control_port
    with OPENER.open(f"http://127.0.0.1:{port}/ca.pem", timeout=20) as response:
        assert response.read().startswith(b"-----BEGIN CERTIFICATE-----")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\xff\xfe garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert api(port, "GET", "/nope")[0] == 404 and api(port, "DELETE", "/status")[0] == 405
    assert api(port, "GET", "/status")[0] == 200  # still serving


def test_bearer_token(mitmdump_factory, tmp_path):
    port = free_port()
    dump = mitmdump_factory(options={"scenario": scenario_file(tmp_path), "control_port": str(port)},
                            env={"MITM407_CONTROL_TOKEN": "t0ken-for-ci"})
    dump.wait_for_log("bearer token required")
    assert api(port, "GET", "/status")[0] == 401
    assert api(port, "GET", "/status", token="wrong")[0] == 401
    assert api(port, "GET", "/status", token="t0ken-for-ci")[0] == 200


def test_another_address_without_a_token_is_refused_at_start(mitmdump_factory, tmp_path):
    dump = mitmdump_factory(options={"scenario": scenario_file(tmp_path), "control_port": str(free_port()),
                                     "control_host": "0.0.0.0"}, wait=False)
    assert dump.proc.wait(timeout=30) != 0
    assert "control_host=0.0.0.0 is not a loopback address" in dump.log and "Traceback" not in dump.log


def test_ctl_command_line(controlled, origin):
    as_alice(controlled, origin)
    port = str(controlled.control_port)
    status = mitm407_cli("ctl", "status", "--port", port)
    assert status.returncode == 0 and json.loads(status.stdout)["users"] == ["alice", "bob"]
    assert mitm407_cli("ctl", "lock", "--user", "alice", "--port", port).returncode == 0
    assert as_alice(controlled, origin) == "407"
    refused = mitm407_cli("ctl", "lock", "--user", "nobody", "--port", port)
    assert refused.returncode == 1 and "no such user" in refused.stdout
    assert mitm407_cli("ctl", "scenario", "digest", "--port", port).returncode == 0
    unreachable = mitm407_cli("ctl", "status", "--port", str(free_port()))
    assert unreachable.returncode == 1 and "cannot reach the control API" in unreachable.stderr


def test_start_up_banner_lists_the_active_faults(mitmdump_factory):
    dump = mitmdump_factory(options={"scenario": "account-lockout"})
    log = dump.wait_for_log("fault active")
    assert "mitm407: scenario 'account-lockout': 1 fault active" in log
    assert "mitm407:   - all requests: lockout: seconds=300 (line 32)" in log


# -- POST /clock: time moves for the proxy, not for the test ----------------------------------------


def digest_exchange(dump, origin, credentials: str = "") -> tuple[str, list[str]]:
    """One request through the proxy on a new connection: (status line, Proxy-Authenticate values)."""
    auth = f"Proxy-Authorization: Digest {credentials}\r\n" if credentials else ""
    request = f"GET {origin.url('/clock')} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n{auth}\r\n".encode()
    [response] = raw_exchange(dump.port, [request])
    head = response.partition(b"\r\n\r\n")[0].decode().split("\r\n")
    return head[0], [line.split(": ", 1)[1] for line in head[1:] if line.startswith("Proxy-Authenticate: ")]


def test_advance_past_nonce_ttl_makes_the_old_nonce_stale(mitmdump_factory, tmp_path, origin):
    path = tmp_path / "digest.yaml"
    path.write_text(
        "version: 1\nname: clock-digest\nrealm: ctl\nschemes: [digest]\n"
        f"users:\n  alice: {ALICE}\ndigest: {{algorithms: [MD5], qop: [auth], nonce_ttl: 60}}\n"
    )
    dump = start_controlled(mitmdump_factory, str(path))
    _, [challenge] = digest_exchange(dump, origin)
    nonce = parse_challenges(challenge)[0].params["nonce"]

    def credentials(nc: str) -> str:
        return answer(user="alice", password=ALICE, realm="ctl", nonce=nonce, uri=origin.url("/clock"), nc=nc)

    assert digest_exchange(dump, origin, credentials("00000001"))[0] == "HTTP/1.1 200 OK"
    assert api(dump.control_port, "POST", "/clock", b'{"advance": 61}') == (200, {"advanced": 61.0, "offset": 61.0})
    line, challenges = digest_exchange(dump, origin, credentials("00000002"))  # well within 60 real seconds
    assert line.startswith("HTTP/1.1 407 ") and challenges and challenges[0].endswith("stale=true")
    assert "nonce expired " in dump.log and " s ago (nonce_ttl 60 s)" in dump.log
    assert "mitm407: clock advanced by 61 s (offset 61 s): nonces, caches, expiry and lockout windows" in dump.log
    assert api(dump.control_port, "GET", "/status")[1]["clock"] == {"offset": 61.0}


def test_advance_past_a_lockout_window_lets_the_user_in(mitmdump_factory, tmp_path, origin):
    lockout = "faults:\n  - lockout: {failures: 2, seconds: 300, status: 403}\n"
    dump = start_controlled(mitmdump_factory, scenario_file(tmp_path, lockout))
    assert [as_alice(dump, origin, password="wrong") for _ in range(2)] == ["407", "407"]
    assert as_alice(dump, origin) == "403"  # the right password, locked out for 300 s
    assert api(dump.control_port, "POST", "/clock", b'{"advance": 299}')[0] == 200
    assert as_alice(dump, origin) == "403"  # one second left
    assert api(dump.control_port, "POST", "/clock", b'{"advance": 2}') == (200, {"advanced": 2.0, "offset": 301.0})
    assert as_alice(dump, origin) == "200"


BAD_CLOCK_BODIES = [
    (b"ninety", "must be JSON"),
    (b'{"seconds": 90}', "nothing else"),
    (b'{"advance": -5}', "more than 0"),
    (b'{"advance": 0}', "more than 0"),
    (b'{"advance": NaN}', "finite"),
    (b'{"advance": 1e999}', "finite"),
    (b'{"advance": 1e12}', "at most"),
    (b'{"advance": "90"}', "a number"),
    (b'{"advance": true}', "a number"),
]


def test_clock_refuses_bad_bodies_with_400(controlled):
    port = controlled.control_port
    for body, message in BAD_CLOCK_BODIES:
        status, answer_ = api(port, "POST", "/clock", body)
        assert status == 400 and message in answer_["error"] and "\n" not in answer_["error"], body
    assert api(port, "GET", "/status")[1]["clock"] == {"offset": 0.0}  # unchanged
    assert api(port, "GET", "/clock")[0] == 405
    assert "Traceback" not in controlled.log and "clock advanced" not in controlled.log


def test_ctl_advance(controlled):
    port = str(controlled.control_port)
    moved = mitm407_cli("ctl", "advance", "90", "--port", port)
    assert moved.returncode == 0 and json.loads(moved.stdout) == {"advanced": 90.0, "offset": 90.0}
    assert json.loads(mitm407_cli("ctl", "status", "--port", port).stdout)["clock"] == {"offset": 90.0}
    for bad in ("ninety", "-5", "0", "nan"):
        refused = mitm407_cli("ctl", "advance", bad, "--port", port)
        assert refused.returncode != 0 and "mitm407 ctl advance SECONDS: advance must be" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert mitm407_cli("ctl", "advance", "--port", port).returncode != 0
    controlled.wait_for_log("mitm407: clock advanced by 90 s (offset 90 s)")


def test_ctl_scenario_file_resolves_its_files_beside_it(controlled, origin, tmp_path):
    """On this machine ``ctl scenario FILE`` hands the proxy the file's path: its htpasswd is found beside it."""
    import base64
    import hashlib

    carol = register_secret("carol", "control-carol-pw")
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "users.htpasswd").write_text(
        "carol:{SHA}" + base64.b64encode(hashlib.sha1(carol.encode()).digest()).decode() + "\n")
    (folder / "switch.yaml").write_text("version: 1\nname: switched\nhtpasswd: users.htpasswd\nschemes: [basic]\n")
    switched = mitm407_cli("ctl", "scenario", "elsewhere/switch.yaml", "--port", str(controlled.control_port),
                           cwd=tmp_path)
    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert api(controlled.control_port, "GET", "/status")[1]["scenario"]["name"] == "switched"
    ok = curl("-x", controlled.proxy_url("carol", carol), origin.url("/h")).stdout[-3:]
    assert ok == "200"
