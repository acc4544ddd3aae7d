"""What the hot path caches must follow: option changes, one attribution per flow, sync hooks."""

from __future__ import annotations

import asyncio
import base64
import inspect

from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow

from hoplogcheck import answered_407_flow, auth_of
from mitm407.core.results import Result
from mitm407.hoplog.addon import META_RECEIVED, HopLog
from mitm407.hoplog.attribution import Kind
from mitm407.proxy.addon import Addon
from mitm407.scenario.load import parse_scenario


def test_cached_via_and_proxy_status_follow_option_changes():
    hoplog = HopLog()
    with taddons.context(hoplog) as tctx:
        tctx.configure(hoplog, hop_name="edge")
        first = tflow.tflow()
        hoplog.request(first)
        first.response = tflow.tresp()
        hoplog.responseheaders(first)
        tctx.configure(hoplog, hop_name="inner", hop_proxy_status=False)
        second = tflow.tflow(resp=True)
        hoplog.responseheaders(second)
        tctx.configure(hoplog, hop_via=False, hop_proxy_status=True)
        third = tflow.tflow()
        hoplog.request(third)
        third.response = tflow.tresp()
        hoplog.responseheaders(third)
    assert first.request.headers.get_all("Via") == ["1.1 edge"]
    assert first.response.headers.get_all("Via") == ["1.1 edge"]
    assert first.response.headers.get_all("Proxy-Status") == ["edge"]
    assert second.response.headers.get_all("Via") == ["1.1 inner"]
    assert second.response.headers.get_all("Proxy-Status") == []
    assert third.request.headers.get_all("Via") == []
    assert third.response.headers.get_all("Via") == []
    assert third.response.headers.get_all("Proxy-Status") == ["inner"]


def test_hoplog_defaults_before_any_configure():
    hoplog = HopLog()
    flow = tflow.tflow(resp=True)
    hoplog.add_response_headers(flow, answered_here=False)
    assert flow.response.headers.get_all("Via") == ["1.1 mitm407"]
    assert flow.response.headers.get_all("Proxy-Status") == ["mitm407"]


def test_a_plain_2xx_without_a_log_file_reads_nothing_back(tmp_path):
    hoplog = HopLog()
    with taddons.context(hoplog):
        flow = tflow.tflow(resp=True)
        flow.response.headers["Via"] = "1.1 squid-a"
        hoplog.responseheaders(flow)
        hoplog.response(flow)
    assert META_RECEIVED not in flow.metadata and flow not in hoplog.attributions
    assert flow.response.headers.get_all("Via") == ["1.1 squid-a", "1.1 mitm407"]


def test_a_plain_2xx_is_not_attributed_until_its_line_is_written(tmp_path):
    hoplog = HopLog()
    with taddons.context(hoplog) as tctx:
        tctx.configure(hoplog, hoplog=str(tmp_path / "h.jsonl"))
        flow = tflow.tflow(resp=True)
        flow.response.headers["Via"] = "1.1 squid-a"
        hoplog.responseheaders(flow)
        assert flow not in hoplog.attributions  # below 400 nothing in the headers depends on it
        assert flow.metadata[META_RECEIVED] == (["1.1 squid-a"], [])  # raw: parsed only when needed
        hoplog.response(flow)
    assert hoplog.attributions[flow].kind is Kind.ORIGIN
    line = (tmp_path / "h.jsonl").read_text()
    assert '"via":[{"protocol":"1.1","received_by":"squid-a","comment":null},' in line


def test_an_answer_is_attributed_once_and_reused_at_the_end(tmp_path, monkeypatch):
    import mitm407.hoplog.addon as hoplog_module

    calls = []
    real = hoplog_module.attribute_hop
    monkeypatch.setattr(hoplog_module, "attribute_hop", lambda facts: calls.append(facts) or real(facts))
    hoplog = HopLog()
    with taddons.context(hoplog) as tctx:
        tctx.configure(hoplog, hoplog=str(tmp_path / "h.jsonl"))
        flow = answered_407_flow()
        hoplog.responseheaders(flow)
        hoplog.response(flow)
    assert len(calls) == 1
    assert flow.response.headers.get_all("Proxy-Status") == [
        'mitm407; error=http_request_denied; details="no Proxy-Authorization header"'
    ]


def test_a_mitmproxy_error_page_is_attributed_again_once_its_body_is_read():
    hoplog = HopLog()
    with taddons.context(hoplog):
        flow = tflow.tflow(resp=True)
        flow.client_conn.proxy_mode = mode_specs.ProxyMode.parse("upstream:http://127.0.0.1:3128")
        flow.response.status_code = 502
        flow.response.headers["Server"] = "mitmproxy 11.0.2"
        flow.response.data.content = None  # responseheaders: the body is not read yet
        hoplog.responseheaders(flow)
        assert flow not in hoplog.attributions
        flow.response.content = b"<html><body>Connection refused</body></html>"
        assert hoplog.attribution(flow).details == "Connection refused"


def test_addon_hooks_are_sync_unless_a_delay_fault_applies(tmp_path):
    addon = Addon()
    addon.install(parse_scenario('version: 1\nusers: {u: "pw"}\nschemes: [basic]\n', str(tmp_path / "s.yaml"),
                                 tmp_path))
    with taddons.context(addon):
        flow = tflow.tflow()
        flow.request.headers["Proxy-Authorization"] = "Basic " + base64.b64encode(b"u:pw").decode()
        assert addon.requestheaders(flow) is None
        assert "Proxy-Authorization" not in flow.request.headers
        assert auth_of(flow.metadata).result is Result.OK
    addon.install(parse_scenario('version: 1\nusers: {u: "pw"}\nschemes: [basic]\nfaults: [{delay: {ms: 10}}]\n',
                                 str(tmp_path / "s.yaml"), tmp_path))
    with taddons.context(addon):
        delayed = tflow.tflow()
        waiting = addon.requestheaders(delayed)
        assert inspect.isawaitable(waiting)
        asyncio.run(waiting)


def scenario_text(schemes: str, extra: str = "") -> str:
    return f'version: 1\nusers: {{u: "pw"}}\nschemes: [{schemes}]\n{extra}'


def hooks_of(addon: Addon) -> set[str]:
    """The per-request hooks mitmproxy would find on the addon (it looks them up at every event)."""
    return {name for name in ("requestheaders", "request", "response") if callable(getattr(addon, name, None))}


def test_request_and_response_hooks_are_attached_only_when_the_scenario_uses_them(tmp_path):
    addon = Addon()
    path, folder = str(tmp_path / "s.yaml"), tmp_path
    addon.install(parse_scenario(scenario_text("basic"), path, folder))
    assert hooks_of(addon) == {"requestheaders"}
    addon.install(parse_scenario(scenario_text("digest", "digest: {qop: [auth, auth-int]}\n"), path, folder))
    assert hooks_of(addon) == {"requestheaders", "request", "response"}
    addon.install(parse_scenario(scenario_text("basic", "faults: [{drop: {at: response}}]\n"), path, folder))
    assert hooks_of(addon) == {"requestheaders", "response"}
    addon.install(parse_scenario(scenario_text("basic"), path, folder))  # a reload back to plain Basic
    assert hooks_of(addon) == {"requestheaders"}


def test_digest_accepted_request_gets_its_info_header_through_the_attached_hook(tmp_path):
    """The hook mitmproxy finds is the one that adds Proxy-Authentication-Info."""
    addon = Addon()
    addon.install(parse_scenario(scenario_text("digest"), str(tmp_path / "s.yaml"), tmp_path))
    flow = tflow.tflow(resp=True)
    addon.response_headers[flow] = (("Proxy-Authentication-Info", "x"),)
    flow.client_conn.proxy_mode = mode_specs.ProxyMode.parse("regular")
    with taddons.context(addon):
        addon.response(flow)
    assert flow.response.headers.get_all("Proxy-Authentication-Info") == ["x"]
