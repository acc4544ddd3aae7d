"""End to end: a hop log from real proxies and curl, rendered by ``report --html``, checked in headless Chromium.

Flows: no credentials (407 from the hop), a chain client -> edge -> core
where core refuses (407 from the upstream hop), a web server (mitm407 in
reverse mode) without credentials (401), good credentials (200 from the
origin). Chromium's rendered DOM is asserted on through the ``data-``
attributes; its screenshot is written for people (MITM407_SCREENSHOT=PATH
keeps a copy: ``make report-screenshot`` writes docs/report-screenshot.png).
"""

from __future__ import annotations

import os
import struct
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

from hoplogcheck import wait_for_record
from procs import CHROMIUM, SECRETS, chromium, curl, mitm407_cli, register_secret

pytestmark = pytest.mark.e2e

ROSA_PW = register_secret("rosa", "report-pass:R-3")  # user of the mitm407 and edge hops
CORE_PW = register_secret("carl", "core-pass-C-4")  # user of the core hop (never sent: core refuses)


def write_scenario(directory: Path, name: str, user: str, password: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        name: {name}
        realm: {name.upper()}
        users:
          {user}: "{password}"
        """), encoding="utf-8")
    return path


def status_of(result) -> int:
    return int(result.stdout.rsplit("\n", 1)[-1])


class Dom(HTMLParser):
    """Elements of the rendered DOM that carry data- attributes, with the flow section each one is in."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[dict[str, str]] = []
        self.flow: dict[str, str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        data = {k: v or "" for k, v in attrs}
        data["tag"] = tag
        if "flow" in data.get("class", "").split() and tag == "section":
            self.flow = data
        if any(k.startswith("data-") for k in data):
            data["in-flow"] = (self.flow or {}).get("data-flow-id", "")
            self.elements.append(data)

    def flows(self) -> list[dict[str, str]]:
        return [e for e in self.elements if e["tag"] == "section"]

    def inside(self, flow: dict[str, str], **match: str) -> list[dict[str, str]]:
        keys = {f"data-{k.replace('_', '-')}": v for k, v in match.items()}
        return [e for e in self.elements if e["in-flow"] == flow["data-flow-id"] and e is not flow
                and all(e.get(k) == v for k, v in keys.items())]


@pytest.fixture(scope="module")
def hop_log(module_mitmdump, logdir, origin, tmp_path_factory) -> Path:
    """Four flows from real processes, concatenated into one hop log in the order they happened."""
    work = tmp_path_factory.mktemp("report")
    solo_log, edge_log = logdir / "report-mitm407.jsonl", logdir / "report-edge.jsonl"
    solo = module_mitmdump(options={"hop_name": "mitm407", "hoplog": str(solo_log),
                                    "scenario": str(write_scenario(work, "solo", "rosa", ROSA_PW))}, name="report")
    core = module_mitmdump(options={"hop_name": "core", "hoplog": str(logdir / "report-core.jsonl"),
                                    "scenario": str(write_scenario(work, "core", "carl", CORE_PW))},
                           name="report-core")
    edge = module_mitmdump(options={"hop_name": "edge", "hoplog": str(edge_log),
                                    "scenario": str(write_scenario(work, "edge", "rosa", ROSA_PW))},
                           extra=["--mode", f"upstream:{core.url}"], name="report-edge")
    web_log = logdir / "report-web.jsonl"  # a web server (reverse mode) wants Authorization: 401
    web = module_mitmdump(options={"hop_name": "web-server", "hoplog": str(web_log),
                                   "scenario": str(write_scenario(work, "web", "rosa", ROSA_PW))},
                          extra=["--mode", f"reverse:{origin.url()}"], name="report-web")

    assert status_of(curl("-x", solo.url, origin.url("/no-credentials"))) == 407
    wait_for_record(solo_log, lambda r: r["path"] == "/no-credentials")
    assert status_of(curl("-x", edge.url, "--proxy-user", f"rosa:{ROSA_PW}", origin.url("/chain"))) == 407
    wait_for_record(edge_log, lambda r: r["path"] == "/chain")
    assert status_of(curl(f"http://127.0.0.1:{web.port}/reverse")) == 401
    wait_for_record(web_log, lambda r: r["path"] == "/reverse")
    assert status_of(curl("-x", solo.url, "--proxy-user", f"rosa:{ROSA_PW}", origin.url("/ok?token=t0p"))) == 200
    wait_for_record(solo_log, lambda r: r["path"].startswith("/ok"))

    logs = (solo_log, edge_log, web_log)
    records = [line for path in logs for line in path.read_text(encoding="utf-8").splitlines()]
    records.sort(key=lambda line: line.split('"time":"', 1)[1][:24])
    combined = work / "hops.jsonl"
    combined.write_text("\n".join(records) + "\n", encoding="utf-8")
    return combined


@pytest.fixture(scope="module")
def report(hop_log: Path) -> Path:
    out = hop_log.with_name("report.html")
    done = mitm407_cli("report", "--html", str(hop_log), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"mitm407 report: wrote {out}\n"
    return out


def no_secrets(text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"secrets in the report: {len(leaked)}"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)")
def test_report_rendered_in_chromium(report: Path, origin, tmp_path: Path):
    page = report.read_text(encoding="utf-8")
    no_secrets(page)
    for external in ("<script", "<link", "src=", "url(", "@import"):  # self-contained, no JS
        assert external not in page

    dom_text = chromium("--dump-dom", report.as_uri(), tmp=tmp_path)
    no_secrets(dom_text)
    dom = Dom(dom_text)
    body = next(e for e in dom.elements if e["tag"] == "body")
    assert (body["data-flows"], body["data-shown"]) == ("4", "4")
    flows = dom.flows()
    assert [(f["data-status"], f["data-answered-kind"], f["data-answered-hop"]) for f in flows] == [
        ("407", "this-proxy", "mitm407"),
        ("407", "upstream-proxy", "core"),
        ("401", "this-proxy", "web-server"),
        ("200", "origin", f"127.0.0.1:{origin.port}"),
    ]
    origin_lane = f"127.0.0.1:{origin.port}"

    # 1: the hop's own 407: the request stops at mitm407, the answer starts there, marked as a 407
    first = flows[0]
    assert [(e["data-lane"], e["data-reached"]) for e in dom.inside(first, lane_kind="client")
            + dom.inside(first, lane_kind="this-hop") + dom.inside(first, lane_kind="origin")] == [
        ("client", "true"), ("mitm407", "true"), (origin_lane, "false")]
    assert [(e["data-from"], e["data-to"]) for e in dom.inside(first) if "request" in e.get("class", "")] == [
        ("client", "mitm407")]
    [answer] = dom.inside(first, role="answer")
    assert (answer["data-from"], answer["data-to"], answer["data-status"], answer["data-class"]) == (
        "mitm407", "client", "407", "s407")

    # 2: the chain: edge forwarded, core (upstream, named by Via/Proxy-Status) refused
    chain = flows[1]
    assert [e["data-lane"] for e in dom.inside(chain) if "data-lane" in e] == ["client", "edge", "core", origin_lane]
    assert [(e["data-from"], e["data-to"]) for e in dom.inside(chain) if "request" in e.get("class", "")] == [
        ("client", "edge"), ("edge", "core")]
    [answer] = dom.inside(chain, role="answer")
    assert (answer["data-from"], answer["data-status"], answer["data-class"]) == ("core", "407", "s407")

    # 3: the web server's 401, coloured apart from the 407s
    [answer] = dom.inside(flows[2], role="answer")
    assert (answer["data-from"], answer["data-status"], answer["data-class"]) == ("web-server", "401", "s401")

    # 4: through to the origin and back
    ok = flows[3]
    assert len([e for e in dom.inside(ok) if "request" in e.get("class", "")]) == 2
    [answer] = dom.inside(ok, role="answer")
    assert (answer["data-from"], answer["data-status"], answer["data-class"]) == (origin_lane, "200", "s2xx")
    assert "/ok?token=REDACTED" in dom_text and "t0p" not in dom_text
    assert "Proxy-Authorization: Basic ‹rosa›" in dom_text

    # the summary table on top counts what the flows show
    assert '<table data-section="status">' in dom_text
    assert "<td>407</td><td class=\"n\">2</td>" in dom_text

    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,900", "--hide-scrollbars", report.as_uri(), tmp=tmp_path)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1200, 900)
    assert len(png) > 20_000  # a drawn page, not a blank one
    keep = os.environ.get("MITM407_SCREENSHOT")
    if keep:  # for the README: tall enough for every flow
        chromium(f"--screenshot={Path(keep).resolve()}", "--window-size=1200,1440", "--hide-scrollbars",
                 report.as_uri(), tmp=tmp_path)


def test_max_flows_caps_the_diagrams(hop_log: Path):
    done = mitm407_cli("report", "--html", str(hop_log), "--max-flows", "1")
    assert done.returncode == 0, done.stderr
    page = done.stdout
    assert page.count('<section class="flow') == 1
    assert '<p class="note" data-capped="1">Showing the first 1 of 4 flows' in page
    no_secrets(page)


def test_bad_arguments_are_errors_not_tracebacks(hop_log: Path, tmp_path: Path):
    done = mitm407_cli("report", "--html", str(hop_log), "--max-flows", "0")
    assert done.returncode == 2 and "expected a whole number of at least 1, got '0'" in done.stderr
    done = mitm407_cli("report", "--html", str(hop_log), "--format", "json")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr
    done = mitm407_cli("report", "--html", str(hop_log), "-o", str(tmp_path / "missing" / "r.html"))
    assert done.returncode == 2
    assert done.stderr == f"mitm407 report: cannot write {tmp_path / 'missing' / 'r.html'}: No such file or directory\n"
    assert "Traceback" not in done.stderr
