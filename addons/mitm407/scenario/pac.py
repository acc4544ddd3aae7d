"""PAC files (proxy auto-config) from a scenario: the ``pac:`` key and the generator.

A client that reads a PAC file asks ``FindProxyForURL(url, host)`` for every
request and goes ``DIRECT`` or through a proxy. A scenario's rules already are
that decision: ``auth: none`` rules (bypass) become ``DIRECT``, the rest goes
to this proxy, which then decides as usual. Rules are first-match, so their
order is kept.

A PAC script sees only the URL (browsers cut the path of https URLs) and the
client's own address: method, path prefix and path regex are invisible to it.
A bypass rule with such a condition is left out (the request goes to the
proxy, which knows); a ``required``/``deny`` rule with one sends the request
to the proxy when its visible part matches (conservative: the proxy decides).

Every string from the scenario is written into the script through
``json.dumps`` (globs, names in comments): a name or glob cannot end a string
or a comment. The output is deterministic for one scenario and proxy address.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import yaml

from mitm407.core.rules import Match, Outcome, Rule, Rules
from mitm407.core.yamlnodes import Mapping, Node, Reader

PAC_PATHS = ("/proxy.pac", "/wpad.dat")
PAC_CONTENT_TYPE = "application/x-ns-proxy-autoconfig"

UNREACHABLE = "unreachable"  # the PAC URL answers an error status, or closes the connection
DEAD_PROXY = "dead_proxy"  # the PAC names a proxy where nothing listens
PAC_FAULTS = (UNREACHABLE, DEAD_PROXY)


@dataclass(frozen=True)
class PacConfig:
    """The scenario's ``pac:`` section; absent, the PAC is generated from the rules."""

    text: str | None = None  # served verbatim instead of the generated script
    fault: str | None = None  # one of PAC_FAULTS
    status: int = 404  # unreachable: the status of the answer
    close: bool = False  # unreachable: close the connection without an answer
    proxy: str | None = None  # dead_proxy: "host:port" named in the PAC; None: a port this proxy keeps closed
    fallback: bool = False  # dead_proxy: the real proxy listed after the dead one ("PROXY dead; PROXY real")


_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$")


def parse_pac(reader: Reader, section: Mapping | None) -> PacConfig:
    """Read ``pac:``: ``text``, and ``fault`` written as faults are (``name`` or ``{name: {settings}}``)."""
    if section is None:
        return PacConfig()
    text = section.text("text")
    fault_node = section.get("fault")
    config = PacConfig(text=text)
    if fault_node is not None:
        config = _parse_fault(reader, fault_node, config)
    if text is not None and config.fault == DEAD_PROXY:
        reader.error(fault_node or section.node, "'dead_proxy' rewrites the generated PAC, and 'text' "
                     "replaces it", "write the dead proxy into the text instead")
    section.finish()
    return config


_FAULT_HINT = "e.g. fault: unreachable, or fault: {unreachable: {status: 503}}"


def _parse_fault(reader: Reader, node: Node, config: PacConfig) -> PacConfig:
    settings: Mapping | None = None
    name_node = node
    if isinstance(node, yaml.MappingNode):
        if len(node.value) != 1:
            reader.error(node, "'fault' names one fault", _FAULT_HINT)
            return config
        name_node, settings_node = node.value[0]
        if settings_node.tag != "tag:yaml.org,2002:null":  # ``{dead_proxy: }``: the defaults
            settings = reader.mapping(settings_node, f"the settings of '{getattr(name_node, 'value', '')}'")
    name = reader.choice(name_node, "'fault'", PAC_FAULTS)
    if name is None:
        return config
    if name == UNREACHABLE:
        status, close = 404, False
        if settings is not None:
            status = settings.integer("status", 404, minimum=400) or 404
            if status > 599:
                reader.error(settings.get("status") or settings.node, f"'status' must be 400-599, got {status}")
            close = settings.boolean("close", False)
            settings.finish()
        return replace(config, fault=name, status=status, close=close)
    proxy, fallback = None, False
    if settings is not None:
        proxy = settings.text("proxy")
        if proxy is not None and not _valid_address(proxy):
            reader.error(settings.get("proxy") or settings.node, f"'proxy' must be HOST:PORT, got '{proxy}'",
                         "e.g. 127.0.0.1:9 or [::1]:9 or deadproxy.example:3128")
        fallback = settings.boolean("fallback", False)
        settings.finish()
    return replace(config, fault=name, proxy=proxy, fallback=fallback)


def _valid_address(text: str) -> bool:
    m = _ADDRESS.match(text)
    return m is not None and 1 <= int(m.group(2)) <= 65535


def proxy_address(host: str, port: int) -> str:
    """``host:port`` as a PAC names a proxy (IPv6 in brackets)."""
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- the generator ---------------------------------------------------------------------------------

_PORT_FUNCTION = r"""function mitm407Port(url) {
  var m = /^([a-z][a-z0-9+.\-]*):\/\/(?:[^\/?#@]*@)?(\[[^\]\/?#]*\]|[^\/?#:]*)(?::([0-9]+))?/i.exec(url);
  if (m && m[3]) return parseInt(m[3], 10);
  var scheme = m ? m[1].toLowerCase() : "";
  if (scheme == "https" || scheme == "wss") return 443;
  if (scheme == "ftp") return 21;
  return 80;
}"""

_PLAIN_GLOB = re.compile(r"^[a-z0-9.*?_:-]*$")  # shExpMatch means the same in every engine for these


def pac_script(rules: Rules, proxy: str, title: str = "") -> str:
    """The PAC JavaScript for ``rules``; ``proxy`` is what proxied requests get (``PROXY host:port``...)."""
    body: list[str] = []
    uses: set[str] = set()
    for rule in rules.rules:
        body.extend(_rule_lines(rule, proxy, uses))
    default = "DIRECT" if rules.default is Outcome.NONE else proxy
    body.append(f"  // no rule matched: default {rules.default.value}")
    body.append(f"  return {json.dumps(default)};")
    head = [f"  var h = {_HOST};"]
    if "port" in uses:
        head.append("  var port = mitm407Port(url);")
    if "https" in uses:
        head.append("  var https = /^(https|wss):/i.test(url);")
    if "me" in uses:
        head.append("  var me = myIpAddress();")
    lines = [
        f"// PAC file generated by mitm407{' from scenario ' + json.dumps(title) if title else ''}.",
        "// Rules in file order, the first that matches decides: bypass (auth: none) -> DIRECT, else the proxy.",
        "function FindProxyForURL(url, host) {",
        *head,
        *body,
        "}",
    ]
    if "port" in uses:
        lines.append(_PORT_FUNCTION)
    return "\n".join(lines) + "\n"


_HOST = 'host.toLowerCase().replace(/^\\[(.*)\\]$/, "$1")'  # IPv6 hosts without brackets, as the proxy sees them


def _rule_lines(rule: Rule, proxy: str, uses: set[str]) -> list[str]:
    label = f"rule {rule.index}" + (f" {json.dumps(rule.name)}" if rule.name else "") + f" (line {rule.line})"
    visible, hidden = _conditions(rule.match, uses)
    outcome = rule.outcome.value
    if rule.outcome is Outcome.NONE:
        if hidden:
            return [f"  // {label}: auth none, skipped: a PAC cannot see its {', '.join(hidden)}"]
        result = "DIRECT"
    else:
        result = proxy
    note = f"; its {', '.join(hidden)} left to the proxy" if hidden else ""
    condition = " && ".join(visible) if visible else "true"
    return [f"  // {label}: auth {outcome}{note}", f"  if ({condition}) return {json.dumps(result)};"]


def _conditions(match: Match, uses: set[str]) -> tuple[list[str], list[str]]:
    """JavaScript conditions a PAC can evaluate, and the names of those it cannot."""
    visible: list[str] = []
    hidden: list[str] = []
    if match.connect is not None:
        uses.add("https")
        visible.append("https" if match.connect else "!https")
    if match.ports is not None:
        uses.add("port")
        visible.append(_any(f"port == {p}" for p in sorted(match.ports)))
    if match.host_globs is not None:
        visible.append(_any(_glob_test(g) for g in match.host_globs))
    if match.clients is not None:
        v4 = [net for net in match.clients if isinstance(net, ipaddress.IPv4Network)]
        if len(v4) == len(match.clients):
            uses.add("me")
            visible.append(_any(
                f"isInNet(me, {json.dumps(str(n.network_address))}, {json.dumps(str(n.netmask))})" for n in v4
            ))
        else:
            hidden.append("IPv6 client networks")
    if match.methods is not None:
        hidden.append("method")
    if match.path_prefixes is not None:
        hidden.append("path")
    if match.path_regex is not None:
        hidden.append("path_regex")
    return visible, hidden


def _any(tests: Iterable[str]) -> str:
    items = list(tests)
    return items[0] if len(items) == 1 else "(" + " || ".join(items) + ")"


def _glob_test(glob: str) -> str:
    """``shExpMatch`` for plain globs; a RegExp for the rest, since engines disagree on ``[...]`` there."""
    if _PLAIN_GLOB.match(glob):
        return f"shExpMatch(h, {json.dumps(glob)})"
    return f"new RegExp({json.dumps(glob_regex(glob))}).test(h)"


def glob_regex(glob: str) -> str:
    """The JavaScript regex source matching what ``fnmatch`` matches for ``glob`` (anchored)."""
    out = ["^"]
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            out.append("[\\s\\S]*")
        elif c == "?":
            out.append("[\\s\\S]")
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal '[', as fnmatch reads it
                out.append("\\[")
                continue
            inner = glob[i:j]
            i = j + 1
            negate = inner.startswith("!")
            inner = inner[1:] if negate else inner
            inner = inner.replace("\\", "\\\\").replace("]", "\\]").replace("[", "\\[")
            if inner.startswith("^"):
                inner = "\\" + inner
            out.append("[" + ("^" if negate else "") + inner + "]")
        else:
            out.append(re.escape(c) if not c.isalnum() else c)
    out.append("$")
    return "".join(out)
