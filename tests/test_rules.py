"""Rule matching: host globs, ports, paths, methods, CONNECT, client networks."""

from __future__ import annotations

import textwrap

from mitm407.core.facts import RequestFacts
from mitm407.core.rules import Outcome
from mitm407.scenario.load import parse_scenario

SCENARIO = textwrap.dedent("""\
    version: 1
    users: {a: b}
    rules:
      - match: {host: ["*.intranet.example", "wiki.corp"]}
        auth: none
      - match: {connect: true, port: [443, 8443]}
        auth: required
      - match: {connect: true}
        auth: deny
      - match: {path: [/public, /static/], method: [GET, HEAD]}
        auth: none
      - match: {path_regex: "\\\\.(png|css)$"}
        auth: none
      - match: {client: ["10.0.0.0/8", "::1"]}
        auth: none
    default: required
    """)


def facts(host="example.com", port=80, path="/", method="GET", client="127.0.0.1", connect=False):
    return RequestFacts(method, path, host, port, "" if connect else path, client, "c", connect)


def outcome(f: RequestFacts) -> tuple[Outcome, int | None]:
    scenario = parse_scenario(SCENARIO, "r.yaml", __import__("pathlib").Path("."))
    rule = scenario.rules.find(f)
    return (rule.outcome, rule.index) if rule else (scenario.rules.default, None)


def test_host_globs_case_insensitive():
    assert outcome(facts(host="app.intranet.example")) == (Outcome.NONE, 1)
    assert outcome(facts(host="APP.Intranet.Example")) == (Outcome.NONE, 1)
    assert outcome(facts(host="wiki.corp")) == (Outcome.NONE, 1)
    assert outcome(facts(host="intranet.example.evil")) == (Outcome.REQUIRED, None)


def test_connect_and_ports():
    assert outcome(facts(port=443, connect=True, method="CONNECT")) == (Outcome.REQUIRED, 2)
    assert outcome(facts(port=22, connect=True, method="CONNECT")) == (Outcome.DENY, 3)


def test_path_prefix_method_and_regex():
    assert outcome(facts(path="/public/x")) == (Outcome.NONE, 4)
    assert outcome(facts(path="/public/x", method="POST")) == (Outcome.REQUIRED, None)
    assert outcome(facts(path="/img/logo.png?v=1")) == (Outcome.REQUIRED, None)
    assert outcome(facts(path="/img/logo.png")) == (Outcome.NONE, 5)


def test_client_networks_including_mapped_ipv4():
    assert outcome(facts(client="10.1.2.3")) == (Outcome.NONE, 6)
    assert outcome(facts(client="::ffff:10.1.2.3")) == (Outcome.NONE, 6)
    assert outcome(facts(client="::1")) == (Outcome.NONE, 6)
    assert outcome(facts(client="192.0.2.1")) == (Outcome.REQUIRED, None)
