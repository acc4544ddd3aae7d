"""The portal's mitmproxy glue in process (``proxy/portal.py``): hooks called directly on test flows.

The pure decisions are in tests/test_portal.py; here: which flows the pages
take, that the auth addon leaves a form post to them, that the posted password
does not stay in the flow, and that any error is an answer from this proxy.
"""

from __future__ import annotations

from pathlib import Path

from mitmproxy.test import tflow

from mitm407.core.flowmeta import META_ANSWERED, META_AUTH, META_PORTAL_FORM
from mitm407.gate.portal import PORTAL_HOST
from mitm407.proxy.addon import Addon
from mitm407.proxy.portal import PortalPages
from mitm407.scenario.load import parse_scenario

PASSWORD = "in-process-pw"


def pages(tmp_path: Path, portal: str = "portal: {ttl: 60}\n") -> tuple[PortalPages, Addon]:
    auth = Addon()
    auth.install(parse_scenario(f"version: 1\nusers: {{ana: {PASSWORD}}}\n{portal}", str(tmp_path / "s.yaml"),
                                tmp_path))
    return PortalPages(auth), auth


def form_flow(body: bytes, method: str = "POST", host: str = PORTAL_HOST, path: str = "/mitm407/login"):
    flow = tflow.tflow()
    flow.request.host, flow.request.port, flow.request.path, flow.request.method = host, 80, path, method
    flow.request.content = body
    flow.request.headers["content-length"] = str(len(body))
    return flow


def post(p: PortalPages, auth: Addon, body: bytes):
    flow = form_flow(body)
    p.requestheaders(flow)
    assert flow.metadata.get(META_PORTAL_FORM) is True and flow.response is None
    assert auth.requestheaders(flow) is None and flow.response is None  # the auth addon leaves it alone
    assert p.request(flow) is None
    return flow


def test_a_good_form_signs_in_and_the_password_leaves_the_flow(tmp_path):
    p, auth = pages(tmp_path)
    flow = post(p, auth, f"username=ana&password={PASSWORD}".encode())
    assert flow.response.status_code == 200 and b"Signed in as <b>ana</b>" in flow.response.content
    assert flow.metadata[META_AUTH]["scheme"] == "portal" and flow.metadata[META_AUTH]["result"] == "ok"
    assert PASSWORD.encode() not in flow.request.content and b"password=REDACTED" in flow.request.content
    assert PASSWORD not in repr(flow.get_state())


def test_an_error_in_the_form_handler_is_a_500_without_the_password(tmp_path, monkeypatch):
    p, auth = pages(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(auth.gate.portal, "login", broken)
    flow = post(p, auth, f"username=ana&password={PASSWORD}".encode())
    assert flow.response.status_code == 500 and flow.metadata[META_ANSWERED] is True
    assert PASSWORD.encode() not in flow.request.content


def test_an_error_on_the_page_is_a_500(tmp_path, monkeypatch):
    p, auth = pages(tmp_path)
    monkeypatch.setattr(auth.gate.portal, "form", lambda *a, **k: 1 / 0)
    flow = form_flow(b"", "GET")
    p.requestheaders(flow)
    assert flow.response.status_code == 500


def test_which_flows_the_pages_take(tmp_path):
    p, _ = pages(tmp_path)
    other = form_flow(b"", "GET", host="example.com")
    p.requestheaders(other)
    assert other.response is None  # the gate decides (the redirect)
    missing = form_flow(b"", "GET", path="/elsewhere")
    p.requestheaders(missing)
    assert missing.response.status_code == 404
    big = form_flow(b"x" * 9000)
    p.requestheaders(big)
    assert big.response.status_code == 413 and META_PORTAL_FORM not in big.metadata
    put = form_flow(b"", "PUT")
    p.requestheaders(put)
    assert put.response.status_code == 405
    no_portal, _ = pages(tmp_path, "")
    # no portal: no hook offered, mitmproxy calls nothing here (every request is the auth addon's)
    assert getattr(no_portal, "requestheaders", None) is None and getattr(no_portal, "request", None) is None


def test_hooks_follow_the_scenario_and_a_pending_post_survives_a_reload(tmp_path):
    p, auth = pages(tmp_path)
    flow = form_flow(f"username=ana&password={PASSWORD}".encode())
    p.requestheaders(flow)
    assert flow.metadata.get(META_PORTAL_FORM) is True
    auth.install(parse_scenario(f"version: 1\nusers: {{ana: {PASSWORD}}}\n", str(tmp_path / "t.yaml"), tmp_path))
    assert getattr(p, "requestheaders", None) is None  # no portal now: nothing to take
    assert auth.requestheaders(flow) is None and flow.response is None  # still not the auth addon's
    assert p.request(flow) is None  # kept: the marked post gets an answer, never forwarded undecided
    assert flow.response.status_code == 503 and PASSWORD.encode() not in flow.request.content
    auth.install(parse_scenario(f"version: 1\nusers: {{ana: {PASSWORD}}}\nportal: {{ttl: 60}}\n",
                                str(tmp_path / "u.yaml"), tmp_path))
    assert getattr(p, "requestheaders", None) is not None
