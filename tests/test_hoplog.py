"""The HopLog addon's hooks, called directly (mitmproxy's taddons/tflow): marks, headers, leaks."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow

from hoplogcheck import answered_407_flow, read_hop_log
from mitm407.core.results import AuthResult, Result
from mitm407.hoplog.addon import MARK_ANSWERED, MARK_LEAK, MARK_UPSTREAM_407, HopLog
from mitm407.hoplog.recordparts import iso_time
from mitm407.hoplog.socks5 import handshake_record
from procs import basic, register_secret

LEAKED_PW = register_secret("carl", "unit-leak-pw")


def test_answer_of_this_proxy_gets_mark_comment_and_proxy_status(tmp_path):
    hoplog = HopLog()
    with taddons.context(hoplog) as tctx:
        tctx.configure(hoplog, hop_name="edge", hoplog=str(tmp_path / "h.jsonl"))
        flow = answered_407_flow()
        hoplog.responseheaders(flow)
        hoplog.response(flow)
        hoplog.response(flow)  # a second end event never writes a second line
    assert flow.marked == MARK_ANSWERED
    assert flow.comment == "407 from edge (mitm407): no Proxy-Authorization header"
    assert flow.response.headers.get_all("Via") == ["1.1 edge"]
    assert flow.response.headers.get_all("Proxy-Status") == [
        'edge; error=http_request_denied; details="no Proxy-Authorization header"'
    ]
    (record,) = read_hop_log(tmp_path / "h.jsonl")
    assert record["answered_by"] == {"kind": "this-proxy", "hop": "edge"}
    assert record["auth"] == {"scheme": None, "user": None, "result": "missing",
                              "reason": "no Proxy-Authorization header"}


def test_upstream_407_gets_its_own_mark():
    hoplog = HopLog()
    with taddons.context(hoplog) as tctx:
        tctx.configure(hoplog, hop_name="edge")
        flow = tflow.tflow(resp=True)
        flow.client_conn.proxy_mode = mode_specs.ProxyMode.parse("upstream:http://127.0.0.1:3128")
        flow.response.status_code = 407
        flow.response.headers["Via"] = "1.1 squid-test (squid/5.7)"
        hoplog.responseheaders(flow)
    assert flow.marked == MARK_UPSTREAM_407 and flow.comment == "407 from upstream proxy squid-test"
    assert flow.response.headers.get_all("Via") == ["1.1 squid-test (squid/5.7)", "1.1 edge"]
    assert flow.response.headers.get_all("Proxy-Status") == ["edge"]


def test_proxy_authorization_inside_a_tunnel_is_a_marked_finding():
    hoplog = HopLog()
    with taddons.context(hoplog) as tctx:
        tctx.configure(hoplog, hop_via=False)
        connect = tflow.tflow(resp=True)
        connect.request.method = "CONNECT"
        hoplog.http_connected(connect)
        inner = tflow.tflow(client_conn=connect.client_conn)
        inner.request.headers["Proxy-Authorization"] = basic("carl", LEAKED_PW)
        hoplog.request(inner)
    assert inner.marked == MARK_LEAK
    assert inner.comment == (
        "credential leak: Proxy-Authorization (basic, user 'carl') inside a CONNECT tunnel, sent to the origin"
    )
    assert "Via" not in inner.request.headers  # hop_via=False
    assert LEAKED_PW not in inner.comment


def test_upstream_mode_plain_http_proxy_authorization_is_not_a_leak():
    hoplog = HopLog()
    with taddons.context(hoplog):
        flow = tflow.tflow()
        flow.client_conn.proxy_mode = mode_specs.ProxyMode.parse("upstream:http://127.0.0.1:3128")
        flow.request.headers["Proxy-Authorization"] = basic("carl", LEAKED_PW)  # for the upstream proxy
        hoplog.request(flow)
    assert flow.marked == "" and flow.request.headers.get_all("Via") == ["1.1 mitm407"]


def test_unwritable_hop_log_while_running_is_an_option_error(tmp_path):
    """Changed at run time (mitmweb's options editor): refused, the old value kept."""
    hoplog = HopLog()
    with taddons.context(hoplog) as tctx:
        hoplog.running()
        with pytest.raises(exceptions.OptionsError, match="cannot open hop log"):
            tctx.configure(hoplog, hoplog=str(tmp_path / "missing-dir" / "h.jsonl"))


def test_two_proxies_appending_to_one_hop_log_keep_their_lines_whole(tmp_path):
    """Each line is one write() in append mode: two hop logs sharing a file interleave whole lines."""
    path = tmp_path / "shared.jsonl"
    first, second = HopLog(), HopLog()
    with taddons.context(first) as tctx:
        tctx.configure(first, hop_name="one", hoplog=str(path))
        with taddons.context(second) as tctx2:
            tctx2.configure(second, hop_name="two", hoplog=str(path))
            for n in range(3):
                for hoplog in (first, second):
                    flow = tflow.tflow(resp=True)
                    flow.request.path = f"/{n}/" + "x" * 5000  # longer than any buffer would flush at once
                    hoplog.response(flow)
            second.done()
        first.done()
    records = read_hop_log(path)
    assert [(r["hop"], r["path"][:3]) for r in records] == [
        (hop, f"/{n}/") for n in range(3) for hop in ("one", "two")
    ]


def test_offered_schemes_of_a_407_names_only_and_hostile_values_survive():
    from mitmproxy import http

    from mitm407.hoplog.addon import offered_schemes

    headers = http.Headers([
        (b"Proxy-Authenticate", b'Negotiate, Basic realm="corp", charset="UTF-8"'),
        (b"Proxy-Authenticate", b'NTLM'),
        (b"Proxy-Authenticate", b'Digest realm="unterminated'),  # does not parse: left out
        (b"Proxy-Authenticate", b"Ev\x1bil"),  # a control character is no token: left out
    ])
    assert offered_schemes(headers, 407) == ["Negotiate", "Basic", "NTLM"]
    assert offered_schemes(http.Headers([(b"WWW-Authenticate", b"Basic realm=x")]), 401) == ["Basic"]
    assert offered_schemes(http.Headers([(b"Proxy-Authenticate", b"Basic")] * 40), 407) == ["Basic"] * 16


def _upstream_200_record(tmp_path, log_file: bool) -> dict:
    """A 200 through an upstream proxy whose Proxy-Status carries an error (RFC 9209 allows it on a stale answer)."""
    hoplog = HopLog()
    with taddons.context(hoplog) as tctx:
        if log_file:
            tctx.configure(hoplog, hop_name="edge", hoplog=str(tmp_path / "h.jsonl"))
        else:
            tctx.configure(hoplog, hop_name="edge")
            hoplog.keep_recent(10)
        flow = tflow.tflow(resp=True)
        flow.client_conn.proxy_mode = mode_specs.ProxyMode.parse("upstream:http://127.0.0.1:3128")
        flow.response.headers["Via"] = "1.1 squid-test (squid/5.7)"
        flow.response.headers["Proxy-Status"] = "squid-test; error=connection_timeout"
        hoplog.responseheaders(flow)
        hoplog.response(flow)
    if log_file:
        (record,) = read_hop_log(tmp_path / "h.jsonl")
    else:
        ((_, record),) = hoplog.records_since(0)
    return record


def test_recent_buffer_alone_attributes_like_the_log_file(tmp_path):
    """With only the control API's buffer on, a 200 keeps what the next hop sent (META_RECEIVED) too."""
    from_file = _upstream_200_record(tmp_path, log_file=True)
    from_buffer = _upstream_200_record(tmp_path, log_file=False)
    assert from_file["answered_by"] == {"kind": "upstream-proxy", "hop": "squid-test"}
    assert from_buffer["answered_by"] == from_file["answered_by"]
    assert {k: v for k, v in from_buffer.items() if k not in ("time", "flow_id", "client")} == {
        k: v for k, v in from_file.items() if k not in ("time", "flow_id", "client")
    }


def test_socks5_line_and_http_line_print_one_moment_alike():
    """A SOCKS handshake's time is the HTTP line's formatting of the same stamp (rounded, not truncated)."""
    stamp = 1764500000.9999995  # truncating the milliseconds would print 10:53:20.999
    refused = AuthResult(Result.BAD_CREDENTIALS, "SOCKS5 password wrong", "socks5", "u")
    faults = [{"name": "delay", "reason": "scenario", "extra": "not logged"}]
    record = handshake_record("edge", "127.0.0.1:5", "c1", refused, False, faults, now=stamp)
    assert record["time"] == iso_time(stamp) == "2025-11-30T10:53:21.000Z"
    assert record["faults"] == [{"name": "delay", "reason": "scenario"}]
