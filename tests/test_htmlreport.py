"""The HTML report's renderer (pure): lanes, arrows, highlighting, escaping, caps."""

from __future__ import annotations

import copy
import json
import re

from mitm407.hoplog.html import lanes_of, render_flow, render_lines, render_report, status_class, upstream_hops

# a real line (hop "edge", no credentials), as hoplog.py wrote it
BASE = json.loads(
    '{"v":1,"time":"2026-11-23T13:05:35.518Z","hop":"edge","flow_id":"50b983c6","client":{"address":'
    '"127.0.0.1:57454","connection_id":"544653e1"},"tunnel_id":null,"method":"GET","scheme":"http","host":'
    '"127.0.0.1","port":18731,"path":"/","status":407,"answered_by":{"kind":"this-proxy","hop":"edge"},'
    '"upstream_proxy":null,"upstream_status":null,"error":{"type":"http_request_denied","next_hop":null,'
    '"message":"no Proxy-Authorization header"},"auth":{"scheme":null,"user":null,"result":"missing","reason":'
    '"no Proxy-Authorization header"},"rule":null,"via":[{"protocol":"1.1","received_by":"edge","comment":null}],'
    '"proxy_status":[{"hop":"edge","params":{"error":"http_request_denied","details":"no Proxy-Authorization '
    'header"}}],"timings":{"total_ms":6.8,"connect_ms":null,"tls_ms":null,"response_ms":0.4},"findings":[],'
    '"faults":[]}'
)


def record(**changes) -> dict:
    out = copy.deepcopy(BASE)
    out.update(changes)
    return out


def arrows(markup: str) -> list[dict[str, str]]:
    """Each arrow's class and data- attributes, in drawing order."""
    found = []
    for match in re.finditer(r'<g class="arrow ([^"]*)"([^>]*)>', markup):
        attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', match.group(2)))
        found.append({**attrs, "kind": match.group(1)})
    return found


def lanes(markup: str) -> list[tuple[str, str, str]]:
    return re.findall(r'data-lane="([^"]*)" data-lane-kind="([^"]*)" data-reached="([^"]*)"', markup)


def test_own_407_stops_at_this_hop():
    markup = render_flow(1, BASE)
    assert lanes(markup) == [("client", "client", "true"), ("edge", "this-hop", "true"),
                             ("127.0.0.1:18731", "origin", "false")]
    assert arrows(markup) == [
        {"kind": "request", "from": "client", "to": "edge"},
        {"kind": "answer", "role": "answer", "from": "edge", "to": "client", "status": "407", "class": "s407"},
    ]
    assert "auth missing: no Proxy-Authorization header" in markup
    assert '<span class="badge bg-s407">407 Proxy Authentication Required</span>' in markup


def test_chain_lanes_from_via_and_proxy_status_nearest_first():
    chain = record(
        answered_by={"kind": "upstream-proxy", "hop": "core"}, upstream_proxy="127.0.0.1:9001",
        via=[{"protocol": "1.1", "received_by": n, "comment": None} for n in ("far", "core", "edge")],
        proxy_status=[{"hop": "core", "params": {"error": "http_request_denied"}}, {"hop": "edge", "params": {}}],
        auth={"scheme": "basic", "user": "ann", "result": "ok", "reason": "valid Basic credentials for 'ann'"},
    )
    assert upstream_hops(chain) == ["core", "far"]
    assert [lane.name for lane in lanes_of(chain)] == ["client", "edge", "core", "far", "127.0.0.1:18731"]
    markup = render_flow(2, chain)
    assert [(a["kind"], a["from"], a["to"]) for a in arrows(markup)] == [
        ("request", "client", "edge"), ("request", "edge", "core"), ("answer", "core", "client")]
    assert [reached for _, _, reached in lanes(markup)] == ["true", "true", "true", "false", "false"]
    assert "Proxy-Authorization: Basic ‹ann›" in markup
    assert "core: no Proxy-Authorization header" in markup  # the refusing hop's reason on its answer


def test_upstream_connect_407_behind_502_draws_both_answers():
    hidden = record(
        method="GET", status=502, upstream_status=407, upstream_proxy="127.0.0.1:9001", via=[], proxy_status=[],
        answered_by={"kind": "upstream-proxy", "hop": "127.0.0.1:9001"}, tunnel_id="c0ffee",
    )
    markup = render_flow(1, hidden)
    assert [(a["kind"], a["from"], a["to"], a.get("status")) for a in arrows(markup)] == [
        ("request", "client", "edge", None), ("request", "edge", "127.0.0.1:9001", None),
        ("answer upstream", "127.0.0.1:9001", "edge", "407"), ("answer", "edge", "client", "502")]
    assert "CONNECT flow c0ffee" in markup


def test_origin_answer_and_reverse_401():
    ok = record(status=200, answered_by={"kind": "origin", "hop": "127.0.0.1:18731"}, error=None)
    assert [(a["from"], a["to"]) for a in arrows(render_flow(1, ok))] == [
        ("client", "edge"), ("edge", "127.0.0.1:18731"), ("127.0.0.1:18731", "client")]
    assert status_class(401) == "s401" and status_class(302) == "s2xx" and status_class(None) == "serr"
    reverse = render_flow(1, record(status=401))  # this hop as the web server (reverse mode)
    assert 'data-class="s401"' in reverse and "no Authorization<" in reverse


def test_failed_forward_and_no_answer():
    failed = record(status=502, error={"type": "destination_unavailable", "next_hop": "127.0.0.1:1",
                                        "message": "connection refused"})
    assert [(a["kind"], a["from"], a["to"]) for a in arrows(render_flow(1, failed))] == [
        ("request", "client", "edge"), ("failed", "edge", "127.0.0.1:18731"), ("answer", "edge", "client")]
    gone = record(status=None, error=None, answered_by={"kind": "none", "hop": ""})
    assert [a["kind"] for a in arrows(render_flow(1, gone))] == ["request"]


def test_findings_and_faults_flagged():
    leak = record(
        findings=[{"kind": "proxy-authorization-to-origin", "header": "Proxy-Authorization", "scheme": "basic",
                   "user": "ann"}],
        faults=[{"name": "challenge_missing", "reason": "407 without Proxy-Authenticate"}],
    )
    markup = render_flow(1, leak)
    assert markup.startswith('<section class="flow leak" id="flow-1"')
    assert 'data-findings="1" data-faults="1"' in markup
    assert ('<li class="finding" data-kind="proxy-authorization-to-origin">⚠ credential leak: '
            "proxy-authorization-to-origin (Proxy-Authorization basic user ann)</li>") in markup
    assert '<li class="fault" data-fault="challenge_missing">fault challenge_missing: 407 without ' in markup


def test_everything_from_the_log_is_escaped():
    hostile = record(hop='<b onmouseover="x">', path="/<script>alert(1)</script>?a=\"'",
                     auth={"scheme": "basic", "user": "<img src=x>", "result": "bad-credentials", "reason": "<i>"})
    page = render_report([hostile])
    assert "<script>" not in page and "<img" not in page and "<b " not in page and "<i>" not in page
    assert "/&lt;script&gt;alert(1)&lt;/script&gt;?a=&quot;&#x27;" in page
    assert "&lt;img src=x&gt;" in page


def test_lines_cap_and_bad_lines():
    lines = [json.dumps(record(flow_id=f"f{n}", status=200 if n % 2 else 407)) for n in range(5)]
    page = render_lines([*lines, "not json", "[1]", ""], max_flows=2)
    assert '<body data-flows="5" data-shown="2">' in page
    assert "5 flows, 2 unreadable lines" in page
    assert '<p class="note" data-capped="2">Showing the first 2 of 5 flows (option --max-flows)' in page
    assert re.findall(r'id="flow-(\d+)"', page) == ["1", "2"]
    assert '<td>407</td><td class="n">3</td>' in page and '<td>200</td><td class="n">2</td>' in page
    assert render_lines([]).count("<section") == 0


def test_foreign_or_hand_edited_records_render_without_a_traceback():
    odd = [
        {},
        {"answered_by": "x", "client": 5, "via": "core", "proxy_status": [1, None], "findings": 3, "faults": "f",
         "status": "407", "auth": [], "error": "boom", "timings": None, "port": "x"},
        record(status=True, answered_by={"kind": "upstream-proxy", "hop": 7}, via=[{"received_by": None}]),
    ]
    page = render_report(odd)
    assert '<body data-flows="3" data-shown="3">' in page
    assert page.count('class="arrow answer"') == 1  # only the last one names an answering hop


def test_a_407_arrow_names_the_schemes_it_offered_escaped():
    markup = render_flow(1, record(challenges=["Negotiate", "<b>Basic</b>"]))
    assert "407 Proxy Authentication Required Negotiate, &lt;b&gt;Basic&lt;/b&gt;" in markup
    assert "<b>Basic" not in markup
