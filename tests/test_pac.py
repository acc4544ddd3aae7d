"""The PAC generator and the ``pac:`` key, evaluated by a real PAC engine (pypac: Duktape via dukpy, in process).

The e2e side (the proxy serving it, Chromium reading it) is tests/test_pac_e2e.py.
"""

from __future__ import annotations

import fnmatch
import json
import re
import textwrap
from pathlib import Path

import pytest

from mitm407.core.problems import ScenarioError
from mitm407.proxy.pac import is_own_address
from mitm407.scenario.load import Scenario, parse_scenario
from mitm407.scenario.pac import PAC_FAULTS, PacConfig, glob_regex, pac_script, proxy_address

pypac = pytest.importorskip("pypac", reason="pypac is a test dependency (pip install -e '.[test]')")
from pypac.parser import PACFile  # noqa: E402
from pypac.parser_functions import myIpAddress  # noqa: E402

PROXY = "PROXY 127.0.0.1:3128"


def scenario(body: str) -> Scenario:
    text = "version: 1\nusers: {demo: x}\n" + textwrap.dedent(body)
    return parse_scenario(text, "pac.yaml", Path("."))


def decide(scn: Scenario, url: str) -> str:
    host = re.match(r"^[a-z]+://(?:[^/@]*@)?(\[[^\]]*\]|[^/:?#]*)", url).group(1)
    return PACFile(pac_script(scn.rules, PROXY, scn.name)).find_proxy_for_url(url, host)


def test_first_matching_rule_decides_in_file_order():
    bypass_first = scenario("""\
        rules:
          - {match: {host: "*.corp.example"}, auth: none}
          - {match: {host: "secret.corp.example"}, auth: required}
        """)
    required_first = scenario("""\
        rules:
          - {match: {host: "secret.corp.example"}, auth: required}
          - {match: {host: "*.corp.example"}, auth: none}
        """)
    assert decide(bypass_first, "http://secret.corp.example/") == "DIRECT"
    assert decide(required_first, "http://secret.corp.example/") == PROXY
    assert decide(required_first, "http://wiki.corp.example/") == "DIRECT"
    assert decide(required_first, "http://example.org/") == PROXY  # default required


def test_default_none_is_direct_and_deny_goes_to_the_proxy():
    scn = scenario("""\
        default: none
        rules:
          - {match: {host: blocked.example}, auth: deny}
        """)
    assert decide(scn, "http://example.org/") == "DIRECT"
    assert decide(scn, "https://blocked.example/") == PROXY  # the proxy answers its 403


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://intranet/", "DIRECT"),
        ("http://INTRANET/", "DIRECT"),  # hosts compare case-insensitively, as the proxy does
        ("http://h7.lab/", "DIRECT"),
        ("http://hx.lab/", PROXY),
        ("http://a.b.corp.example/x", "DIRECT"),
        ("http://corp.example/", PROXY),
        ("http://[::1]:8080/", "DIRECT"),
    ],
)
def test_host_globs(url: str, expected: str):
    scn = scenario("""\
        rules:
          - {match: {host: [intranet, "h[0-9].lab", "*.corp.example", "::1"]}, auth: none}
        """)
    assert decide(scn, url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a.example/", "DIRECT"),  # port 80 by default
        ("http://a.example:8080/x?y", "DIRECT"),
        ("http://user:pw@a.example:8080/", "DIRECT"),
        ("http://a.example:8081/", PROXY),
        ("https://a.example/", PROXY),  # 443
        ("https://a.example:8080/", "DIRECT"),
        ("http://[::1]:8080/", "DIRECT"),
        ("ftp://a.example/", PROXY),  # 21
    ],
)
def test_ports_parsed_from_the_url(url: str, expected: str):
    scn = scenario("""\
        rules:
          - {match: {port: [8080, 80]}, auth: none}
        """)
    assert decide(scn, url) == expected


def test_connect_is_https():
    scn = scenario("""\
        rules:
          - {match: {connect: true, host: tunnel.example}, auth: none}
          - {match: {connect: false, host: plain.example}, auth: none}
        """)
    assert decide(scn, "https://tunnel.example/") == "DIRECT"
    assert decide(scn, "wss://tunnel.example/") == "DIRECT"
    assert decide(scn, "http://tunnel.example/") == PROXY
    assert decide(scn, "http://plain.example/") == "DIRECT"
    assert decide(scn, "https://plain.example/") == PROXY


def test_client_networks_use_my_ip_address():
    me = myIpAddress()  # what pypac's myIpAddress() answers on this machine
    mine = scenario(f"""\
        rules:
          - {{match: {{client: ["192.0.2.0/24", "{me}/32"]}}, auth: none}}
        """)
    other = scenario("""\
        rules:
          - {match: {client: 192.0.2.0/24}, auth: none}
        """)
    assert decide(mine, "http://a.example/") == "DIRECT"
    assert decide(other, "http://a.example/") == PROXY
    assert 'isInNet(me, "192.0.2.0", "255.255.255.0")' in pac_script(mine.rules, PROXY)


def test_conditions_a_pac_cannot_see():
    """A bypass rule with a hidden condition is skipped; a required one goes to the proxy on its visible part."""
    scn = scenario("""\
        default: none
        rules:
          - {match: {host: api.example, method: POST}, auth: none}
          - {match: {host: api.example}, auth: required}
          - {match: {host: docs.example, path: /private}, auth: required}
          - {match: {path_regex: "^/x"}, auth: deny}
          - {match: {client: "2001:db8::/32"}, auth: none}
        """)
    script = pac_script(scn.rules, PROXY)
    assert "skipped: a PAC cannot see its method" in script
    assert "its path left to the proxy" in script
    assert "skipped: a PAC cannot see its IPv6 client networks" in script
    assert decide(scn, "http://api.example/") == PROXY  # the POST bypass is the proxy's business
    assert decide(scn, "https://docs.example/public") == PROXY  # the path is not visible: conservative
    assert decide(scn, "http://other.example/") == PROXY  # the path_regex deny rule: the proxy decides
    only_hidden = scenario("""\
        default: none
        rules:
          - {match: {method: GET}, auth: none}
        """)
    assert decide(only_hidden, "http://a.example/") == "DIRECT"  # skipped, then the default


def test_scenario_strings_cannot_escape_the_script():
    scn = scenario("""\
        name: "evil\\"); return \\"DIRECT"
        rules:
          - name: "x\\n  return 'DIRECT'; /* */ \\u2028 \\""
            match: {host: ["a\\"b", "c\\\\d", "e'f"]}
            auth: none
        """)
    script = pac_script(scn.rules, PROXY, scn.name)
    assert "\n  return 'DIRECT'" not in script and "\u2028" not in script
    assert decide(scn, "http://example.org/") == PROXY
    pac = PACFile(script)
    assert pac.find_proxy_for_url('http://a"b/', 'a"b') == "DIRECT"
    assert pac.find_proxy_for_url("http://c\\d/", "c\\d") == "DIRECT"
    assert pac.find_proxy_for_url("http://e'f/", "e'f") == "DIRECT"


def test_deterministic():
    body = """\
        rules:
          - {match: {port: [9, 3, 7], host: [b, a]}, auth: none}
        """
    first, second = scenario(body), scenario(body)
    assert pac_script(first.rules, PROXY, "n") == pac_script(second.rules, PROXY, "n")
    assert "(port == 3 || port == 7 || port == 9)" in pac_script(first.rules, PROXY)
    assert 'shExpMatch(h, "b") || shExpMatch(h, "a")' in pac_script(first.rules, PROXY)  # file order


GLOBS = ["*.corp.example", "h[0-9].lab", "[!a]x", "a[", "x?y", "[]]z", "[!]]z", "a.b*", "[^x]", "a+b", "(x)"]
HOSTS = ["h1.lab", "bx", "ax", "a[", "xzy", "]z", "qz", "a.bcd", "^", "x", "w.corp.example", "a+b", "(x)", "aab"]


@pytest.mark.parametrize("glob", GLOBS)
def test_globs_mean_in_the_pac_what_they_mean_to_the_proxy(glob: str):
    """fnmatch (the proxy's rules) and the PAC engine agree on every host, brackets and regex characters included."""
    scn = scenario(f"rules: [{{match: {{host: {json.dumps(glob)}}}, auth: none}}]\n")
    pac = PACFile(pac_script(scn.rules, PROXY))
    for host in HOSTS:
        expected = "DIRECT" if scn.rules.rules[0].match.hosts.match(host) else PROXY
        assert pac.find_proxy_for_url(f"http://{host}/", host) == expected, host
        assert bool(re.match(glob_regex(glob), host)) == fnmatch.fnmatchcase(host, glob), host


def test_proxy_address():
    assert proxy_address("127.0.0.1", 8080) == "127.0.0.1:8080"
    assert proxy_address("::1", 8080) == "[::1]:8080"
    assert proxy_address("[::1]", 8080) == "[::1]:8080"


@pytest.mark.parametrize(
    ("host", "port", "sockname", "expected"),
    [
        ("127.0.0.1", 8080, ("127.0.0.1", 8080), True),
        ("localhost", 8080, ("127.0.0.1", 8080), True),
        ("LOCALHOST", 8080, ("::ffff:127.0.0.1", 8080, 0, 0), True),
        ("::1", 8080, ("::1", 8080, 0, 0), True),
        ("10.1.2.3", 8080, ("10.1.2.3", 8080), True),
        ("10.1.2.3", 8080, ("::ffff:10.1.2.3", 8080, 0, 0), True),
        ("127.0.0.1", 8081, ("127.0.0.1", 8080), False),  # another port: a proxied request
        ("10.9.9.9", 8080, ("10.1.2.3", 8080), False),
        ("example.com", 8080, ("10.1.2.3", 8080), False),
        ("127.0.0.1", 8080, None, False),
    ],
)
def test_is_own_address(host, port, sockname, expected):
    assert is_own_address(host, port, sockname) is expected


# -- the pac: key ------------------------------------------------------------------


def test_pac_key_defaults_and_values():
    assert scenario("").pac == PacConfig()
    assert scenario("pac: {text: 'function FindProxyForURL(u, h) { return \"DIRECT\"; }'}").pac.text.startswith(
        "function"
    )
    assert scenario("pac: {fault: unreachable}").pac == PacConfig(fault="unreachable", status=404)
    assert scenario("pac: {fault: {unreachable: {status: 503}}}").pac == PacConfig(fault="unreachable", status=503)
    assert scenario("pac: {fault: {unreachable: {close: true}}}").pac.close is True
    assert scenario("pac: {fault: {dead_proxy: }}").pac == PacConfig(fault="dead_proxy")
    dead = scenario("pac: {fault: {dead_proxy: {proxy: '[::1]:9', fallback: true}}}").pac
    assert (dead.fault, dead.proxy, dead.fallback) == ("dead_proxy", "[::1]:9", True)
    assert PAC_FAULTS == ("unreachable", "dead_proxy")


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ("pac: {fault: dead}", "pac.yaml:3:14", "unknown value 'dead' for 'fault'"),
        ("pac: {fault: {unreachable: {status: 200}}}", "pac.yaml:3:37", "'status' must be at least 400"),
        ("pac: {fault: {unreachable: {status: 600}}}", "pac.yaml:3:37", "'status' must be 400-599"),
        ("pac: {fault: {unreachable: {proxy: 'a:1'}}}", "pac.yaml:3:29", "unknown key 'proxy'"),
        ("pac: {fault: {dead_proxy: {proxy: 'no port'}}}", "pac.yaml:3:35", "'proxy' must be HOST:PORT"),
        ("pac: {fault: {dead_proxy: {proxy: 'a:70000'}}}", "pac.yaml:3:35", "'proxy' must be HOST:PORT"),
        ("pac: {fault: {dead_proxy: {fallback: 1}}}", "pac.yaml:3:38", "'fallback' must be true or false"),
        ("pac: {fault: {dead_proxy: [x]}}", "pac.yaml:3:27", "the settings of 'dead_proxy' must be a mapping"),
        ("pac: {fault: {unreachable: {}, dead_proxy: {}}}", "pac.yaml:3:14", "'fault' names one fault"),
        ("pac: {fault: dead_proxy, text: x}", "pac.yaml:3:14", "'text' replaces it"),
        ("pac: {txt: x}", "pac.yaml:3:7", "unknown key 'txt' in 'pac'"),
        ("pac: [x]", "pac.yaml:3:6", "'pac' must be a mapping"),
    ],
)
def test_pac_key_errors_are_located(body: str, where: str, message: str):
    with pytest.raises(ScenarioError) as e:
        scenario(body)
    lines = str(e.value).splitlines()
    assert any(line.startswith(f"{where}: ") and message in line for line in lines), lines


# -- the addon's hook, in process (mitmproxy's own test flows) --------------------------------


def pac_flow(host: str = "127.0.0.1", port: int = 8080, path: str = "/proxy.pac", method: str = "GET"):
    from mitmproxy.test import tflow

    flow = tflow.tflow()
    flow.client_conn.sockname = ("127.0.0.1", 8080)
    flow.request.host, flow.request.port, flow.request.path, flow.request.method = host, port, path, method
    return flow


def test_hook_answers_only_pac_fetches_sent_to_itself():
    from mitm407.core.flowmeta import META_ANSWERED
    from mitm407.proxy.pac import Pac

    scn = scenario("rules: [{match: {host: intranet}, auth: none}]\n")
    pac = Pac(lambda: scn)
    own = pac_flow(host="localhost")
    pac.requestheaders(own)
    assert own.response.status_code == 200 and own.metadata[META_ANSWERED] is True
    assert own.response.headers["content-type"] == "application/x-ns-proxy-autoconfig"
    assert own.response.text == pac_script(scn.rules, "PROXY localhost:8080", scn.name)
    for other in (pac_flow(port=8081), pac_flow(host="example.com"), pac_flow(path="/other"),
                  pac_flow(method="POST"), pac_flow(path="/proxy.pac/x")):
        pac.requestheaders(other)
        assert other.response is None and META_ANSWERED not in other.metadata
    no_scenario = pac_flow()
    Pac(lambda: None).requestheaders(no_scenario)  # left to the auth addon, which answers 503
    assert no_scenario.response is None


def test_hook_fails_closed():
    """An error while building the PAC is an answer from this proxy (500), never a request left open."""
    from mitm407.core.flowmeta import META_ANSWERED
    from mitm407.proxy.pac import Pac

    broken = scenario("")
    object.__setattr__(broken, "rules", None)  # pac_script raises on it
    flow = pac_flow()
    Pac(lambda: broken).requestheaders(flow)
    assert flow.response.status_code == 500 and flow.metadata[META_ANSWERED] is True
