"""A hop log as one self-contained HTML page: a summary table, then each flow as a sequence diagram.

Pure: records in (dicts as ``hoplog.py`` writes them), a string out. No
external assets and no JavaScript, so the page can be mailed, attached to a
bug or opened offline. Every value from the log goes through ``html.escape``:
the log is secret-free already, and a hostile path or header cannot inject
markup. Diagrams are inline SVG with ``data-`` attributes (lane, from, to,
status) so tests can check the rendered DOM, not pixels.

Lanes, left to right: the client, this hop (the proxy that wrote the line),
the upstream proxies it learnt of (``Via``, ``Proxy-Status``,
``answered_by``, ``upstream_proxy``), the origin. The request goes as far as
it got; the answer comes back from the lane that made it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mitm407.hoplog.attribution import upstream_identity
from mitm407.hoplog.summary import HopSummary, display_name, parse_lines, sections

Names = Mapping[str, str]  # upstream address -> the name it gave, learnt from the whole log
NO_NAMES: Names = {}

DEFAULT_MAX_FLOWS = 200

LANE_WIDTH = 170
LANE_TOP = 46  # below the lane headers
ROW_HEIGHT = 46
MAX_LABEL = 44  # characters of a label drawn in the SVG (the full text is in a <title>)

STATUS_NAMES = {200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
                400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                407: "Proxy Authentication Required", 500: "Internal Server Error", 502: "Bad Gateway",
                503: "Service Unavailable", 504: "Gateway Timeout"}

LEGEND = (
    ("s407", "407 Proxy Authentication Required: a proxy wants Proxy-Authorization"),
    ("s401", "401 Unauthorized: the server wants Authorization"),
    ("s2xx", "2xx/3xx: answered"),
    ("serr", "other 4xx/5xx, or no answer"),
)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:0}
.sub{color:#57606a;margin:0 0 16px}
.summary{display:flex;flex-wrap:wrap;gap:16px;margin:12px 0 20px;align-items:flex-start}
.summary table{border-collapse:collapse;min-width:180px}
.summary th,.summary td{border:1px solid #d0d7de;padding:3px 8px;text-align:left}
.summary th{background:#f6f8fa}.summary td.n{text-align:right}
.legend{display:flex;flex-wrap:wrap;gap:14px;margin:0 0 18px;padding:8px 12px;background:#f6f8fa;border-radius:6px}
.legend span{display:inline-flex;align-items:center;gap:6px}
.sw{display:inline-block;width:22px;height:4px;border-radius:2px}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;border-radius:6px}
.flow{border:1px solid #d0d7de;border-radius:8px;margin:0 0 18px;padding:10px 14px;page-break-inside:avoid}
.flow.leak{border:2px solid #cf222e}
.flow header{display:flex;flex-wrap:wrap;gap:10px;align-items:baseline}
.badge{font-weight:700;padding:1px 8px;border-radius:10px;color:#fff}
.target{font-family:ui-monospace,monospace;word-break:break-all}
.meta{color:#57606a;font-size:12px}
.flow-body{display:flex;flex-wrap:wrap;gap:4px 28px;align-items:flex-start}
svg{display:block;margin:6px 0;max-width:100%;height:auto;flex:none}
svg text{font:12px system-ui,sans-serif}
svg .lane-name{font-weight:700}
svg .lane-kind{fill:#57606a;font-size:11px}
svg .unreached text{fill:#8c959f}
svg .lifeline{stroke:#8c959f;stroke-dasharray:4 4}
svg .unreached .lifeline{stroke:#d0d7de}
svg .head{fill:#f6f8fa;stroke:#8c959f}
svg .unreached .head{fill:#fff;stroke:#d0d7de;stroke-dasharray:3 3}
svg .request line{stroke:#1f2328;stroke-width:1.6}
svg .failed line{stroke:#cf222e;stroke-dasharray:5 3}
svg .answer line{stroke-width:2.6}
.facts{flex:1 1 320px;min-width:280px;margin-top:6px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}
dt{color:#57606a}dd{margin:0;word-break:break-word}
ul.findings,ul.faults{margin:4px 0 0;padding-left:20px}
.finding{color:#cf222e;font-weight:700}.fault{color:#8250df}
.s407{color:#bc4c00}.s401{color:#8250df}.s2xx{color:#1a7f37}.serr{color:#cf222e}
.bg-s407{background:#e16f24}.bg-s401{background:#8250df}.bg-s2xx{background:#1a7f37}.bg-serr{background:#cf222e}
"""

COLOURS = {"s407": "#e16f24", "s401": "#8250df", "s2xx": "#1a7f37", "serr": "#cf222e"}


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def status_class(status: int | None) -> str:
    if status == 407:
        return "s407"
    if status == 401:
        return "s401"
    if status is not None and 200 <= status < 400:
        return "s2xx"
    return "serr"


def status_text(status: int | None) -> str:
    if status is None:
        return "no answer"
    name = STATUS_NAMES.get(status)
    return f"{status} {name}" if name else str(status)


def short(text: str, limit: int = MAX_LABEL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- lanes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lane:
    name: str
    kind: str  # client, this-hop, upstream, origin
    caption: str


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _map(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A sub-object of the record; {} when absent or not an object (a hand-edited or foreign log)."""
    value = record.get(key)
    return value if isinstance(value, Mapping) else {}


def _maps(record: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """A list of objects of the record; other items (and a non-list) are skipped."""
    value = record.get(key)
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _int(record: Mapping[str, Any], key: str) -> int | None:
    value = record.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def origin_name(record: Mapping[str, Any]) -> str:
    return f"{_text(record.get('host')) or '?'}:{record.get('port', '')}".rstrip(":")


def upstream_hops(record: Mapping[str, Any], known: Names = NO_NAMES) -> list[str]:
    """Proxies between this hop and the origin, nearest first, as named by the answer and the log.

    An upstream named only by its address in this record gets the name it gave in another (``known``).
    """
    hop = _text(record.get("hop"))
    names: list[str] = []
    # Via and Proxy-Status in a response list the hop nearest the origin first; we draw left to right
    for entries, key in ((_maps(record, "via"), "received_by"), (_maps(record, "proxy_status"), "hop")):
        found = [_text(e.get(key)) for e in entries]
        for name in reversed(found):
            if name and name != hop and name not in names:
                names.append(name)
    answered = _map(record, "answered_by")
    if answered.get("kind") == "upstream-proxy":
        name = display_name(known, _text(answered.get("hop")))
        if name and name not in names and name != hop:
            names.append(name)
    upstream = _text(record.get("upstream_proxy"))
    if upstream and not names:
        names.append(display_name(known, upstream))
    return names


def lanes_of(record: Mapping[str, Any], known: Names = NO_NAMES) -> list[Lane]:
    hop = _text(record.get("hop")) or "mitm407"
    lanes = [Lane("client", "client", _text(_map(record, "client").get("address")) or "client"),
             Lane(hop, "this-hop", "mitm407 hop (this log)")]
    identity = upstream_identity(record)
    nearest = display_name(known, identity.name or identity.address) if identity else None
    lanes += [Lane(name, "upstream", f"upstream {identity.address}" if identity and name == nearest and
                   name != identity.address else "upstream proxy") for name in upstream_hops(record, known)]
    lanes.append(Lane(origin_name(record), "origin", "origin"))
    return lanes


def answering_index(record: Mapping[str, Any], lanes: list[Lane], known: Names = NO_NAMES) -> int | None:
    """Index of the lane that answered, None when nobody did."""
    answered = _map(record, "answered_by")
    kind = answered.get("kind")
    if kind == "this-proxy":
        return 1
    if kind == "origin":
        return len(lanes) - 1
    if kind == "upstream-proxy":
        name = display_name(known, _text(answered.get("hop")))
        return next((i for i, lane in enumerate(lanes) if lane.kind == "upstream" and lane.name == name), 1)
    return None


# -- one flow ----------------------------------------------------------------------------


def _x(index: int) -> int:
    return LANE_WIDTH // 2 + index * LANE_WIDTH


def _arrow(cls: str, a: int, b: int, y: int, label: str, attrs: dict[str, str], colour: str | None = None,
           sublabel: str = "") -> str:
    x1, x2 = _x(a), _x(b)
    direction = 1 if x2 > x1 else -1
    tip = x2 - direction * 2
    stroke = f' stroke="{colour}"' if colour else ""
    fill = colour or "#1f2328"
    data = "".join(f' data-{k}="{esc(v)}"' for k, v in attrs.items())
    head = f"{tip},{y} {tip - direction * 10},{y - 5} {tip - direction * 10},{y + 5}"
    mid = (x1 + x2) // 2
    parts = [
        f'<g class="arrow {cls}"{data}>',
        f"<title>{esc(label)}{(' — ' + esc(sublabel)) if sublabel else ''}</title>",
        f'<line x1="{x1}" y1="{y}" x2="{tip - direction * 8}" y2="{y}"{stroke}/>',
        f'<polygon points="{head}" fill="{fill}"/>',
        f'<text x="{mid}" y="{y - 7}" text-anchor="middle" fill="{fill}">{esc(short(label))}</text>',
    ]
    if sublabel:
        parts.append(f'<text x="{mid}" y="{y + 15}" text-anchor="middle" class="lane-kind">'
                     f"{esc(short(sublabel, 52))}</text>")
    parts.append("</g>")
    return "".join(parts)


def request_label(record: Mapping[str, Any]) -> str:
    method = _text(record.get("method")) or "?"
    if method == "CONNECT":
        return f"CONNECT {origin_name(record)}"
    scheme = _text(record.get("scheme"))
    path = _text(record.get("path"))
    return f"{method} {scheme}://{origin_name(record)}{path}" if scheme else f"{method} {path}"


def credentials_header(record: Mapping[str, Any]) -> str:
    """The header this hop read: a hop answers 401 only when it acts as the server (reverse mode)."""
    answered = _map(record, "answered_by")
    return "Authorization" if record.get("status") == 401 and answered.get("kind") == "this-proxy" else (
        "Proxy-Authorization")


def credentials_label(record: Mapping[str, Any]) -> str:
    """What the client presented, as the log knows it: scheme and user, never more."""
    auth, header = record.get("auth"), credentials_header(record)
    if not isinstance(auth, Mapping):
        return "not checked here"
    if auth.get("result") == "missing":
        return f"no {header}"
    scheme, user = _text(auth.get("scheme")), _text(auth.get("user"))
    if scheme:
        return f"{header}: {scheme.capitalize()}" + (f" ‹{user}›" if user else "")
    return f"auth: {auth.get('result')}"


def decision_label(record: Mapping[str, Any]) -> str:
    """Why this hop let the request on (under the "forwarded" arrow): for Negotiate and NTLM, whose user the
    handshake proved and how (mutual authentication, connection authenticated); never a token."""
    auth = _map(record, "auth")
    if auth.get("result") not in ("ok", "bypass"):
        return ""
    user = _text(auth.get("user"))
    return f"auth {auth.get('result')}" + (f" ‹{user}›" if user else "") + f": {_text(auth.get('reason'))}"


def diagram(record: Mapping[str, Any], known: Names = NO_NAMES) -> str:
    lanes = lanes_of(record, known)
    answerer = answering_index(record, lanes, known)
    status, upstream_status = _int(record, "status"), _int(record, "upstream_status")
    error = _map(record, "error") or None
    reached = answerer if answerer is not None else 1
    # this hop tried the next one and failed (connection refused, timeout): drawn as a broken arrow
    failed = answerer == 1 and error is not None and bool(error.get("next_hop")) and len(lanes) > 2

    rows: list[str] = []
    y = LANE_TOP + 26
    for index in range(reached):
        label = request_label(record) if index == 0 else "forwarded"
        sub = credentials_label(record) if index == 0 else decision_label(record) if index == 1 else ""
        rows.append(_arrow("request", index, index + 1, y, label, {"from": lanes[index].name,
                                                                    "to": lanes[index + 1].name}, sublabel=sub))
        y += ROW_HEIGHT
    if failed:
        rows.append(_arrow("failed", 1, 2, y, f"✕ {_text(error.get('type')) if error else ''}",
                           {"from": lanes[1].name, "to": lanes[2].name}, COLOURS["serr"]))
        y += ROW_HEIGHT
    if answerer is not None:
        start = answerer
        if upstream_status is not None and upstream_status != status and answerer > 1:
            cls = status_class(upstream_status)
            rows.append(_arrow("answer upstream", answerer, 1, y, status_text(upstream_status),
                               {"from": lanes[answerer].name, "to": lanes[1].name, "status": str(upstream_status),
                                "class": cls}, COLOURS[cls], sublabel="refused the proxy's CONNECT"))
            y += ROW_HEIGHT
            start = 1
        cls = status_class(status)
        auth = _map(record, "auth") or None
        sub = ""
        if start == 1 and status is not None and status >= 400 and auth is not None:
            sub = f"auth {auth.get('result')}: {_text(auth.get('reason'))}"
        elif start > 1 and error is not None and error.get("message"):
            sub = f"{lanes[start].name}: {_text(error.get('message'))}"
        offered = [c for c in record.get("challenges") or () if isinstance(c, str)]
        label = status_text(status) + (f" {', '.join(offered)}" if offered else "")  # 407 Negotiate, Basic
        rows.append(_arrow("answer", start, 0, y, label,
                           {"role": "answer", "from": lanes[start].name, "to": "client", "status": str(status or ""),
                            "class": cls}, COLOURS[cls], sublabel=sub))
        y += ROW_HEIGHT
    height = y
    lane_parts = []
    for index, lane in enumerate(lanes):
        x = _x(index)
        is_reached = index <= max(reached, 1)
        cls = "lane" + ("" if is_reached else " unreached")
        lane_parts.append(
            f'<g class="{cls}" data-lane="{esc(lane.name)}" data-lane-kind="{lane.kind}" '
            f'data-reached="{str(is_reached).lower()}">'
            f"<title>{esc(lane.name)} ({esc(lane.caption)})</title>"
            f'<rect class="head" x="{x - LANE_WIDTH // 2 + 8}" y="2" width="{LANE_WIDTH - 16}" height="38" rx="6"/>'
            f'<text class="lane-name" x="{x}" y="18" text-anchor="middle">{esc(short(lane.name, 24))}</text>'
            f'<text class="lane-kind" x="{x}" y="33" text-anchor="middle">{esc(short(lane.caption, 28))}</text>'
            f'<line class="lifeline" x1="{x}" y1="{LANE_TOP}" x2="{x}" y2="{height}"/></g>'
        )
    width = LANE_WIDTH * len(lanes)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">' + "".join(lane_parts) + "".join(rows) + "</svg>")


def _details(record: Mapping[str, Any]) -> str:
    items: list[tuple[str, str]] = []
    answered = _map(record, "answered_by")
    items.append(("answered by", f"{answered.get('kind', 'none')} {_text(answered.get('hop'))}".strip()))
    auth = record.get("auth")
    if isinstance(auth, Mapping):
        who = " ".join(p for p in (_text(auth.get("scheme")), _text(auth.get("user")) and f"user {auth['user']}") if p)
        reason = _text(auth.get("reason"))
        items.append(("auth", f"{auth.get('result')}" + (f" ({who})" if who else "") + f": {reason}"))
    else:
        items.append(("auth", "not checked by this hop"))
    if record.get("rule"):
        items.append(("rule", _text(record.get("rule"))))
    error = record.get("error")
    if isinstance(error, Mapping):
        text = _text(error.get("type"))
        if error.get("next_hop"):
            text += f" (next hop {error['next_hop']})"
        if error.get("message"):
            text += f": {error['message']}"
        items.append(("error", text))
    if record.get("upstream_proxy"):
        items.append(("upstream proxy", _text(record.get("upstream_proxy"))))
    if record.get("tunnel_id"):
        items.append(("inside tunnel", f"CONNECT flow {record['tunnel_id']}"))
    chain = [_text(v.get("received_by")) for v in _maps(record, "via")]
    if chain:
        items.append(("Via", ", ".join(chain)))
    statuses = []
    for entry in _maps(record, "proxy_status"):
        params = _map(entry, "params")
        statuses.append("; ".join([_text(entry.get("hop")), *(f"{k}={v}" for k, v in params.items())]))
    if statuses:
        items.append(("Proxy-Status", ", ".join(statuses)))
    timings = _map(record, "timings")
    if timings.get("total_ms") is not None:
        items.append(("time", f"{timings['total_ms']} ms"))
    out = ["<dl>", *(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items), "</dl>"]
    findings = _maps(record, "findings")
    if findings:
        out.append('<ul class="findings">')
        out += [f'<li class="finding" data-kind="{esc(f.get("kind"))}">⚠ credential leak: {esc(f.get("kind"))} '
                f"({esc(f.get('header'))} {esc(f.get('scheme'))}"
                f"{(' user ' + esc(f.get('user'))) if f.get('user') else ''})</li>" for f in findings]
        out.append("</ul>")
    faults = _maps(record, "faults")
    if faults:
        out.append('<ul class="faults">')
        out += [f'<li class="fault" data-fault="{esc(f.get("name"))}">fault {esc(f.get("name"))}: '
                f"{esc(f.get('reason'))}</li>" for f in faults]
        out.append("</ul>")
    return "".join(out)


def render_flow(number: int, record: Mapping[str, Any], known: Names = NO_NAMES) -> str:
    status = _int(record, "status")
    cls = status_class(status)
    answered = _map(record, "answered_by")
    leak = bool(_maps(record, "findings"))
    attrs = {
        "flow-id": _text(record.get("flow_id")), "hop": _text(record.get("hop")), "status": str(status or ""),
        "class": cls, "answered-kind": _text(answered.get("kind")), "answered-hop": _text(answered.get("hop")),
        "findings": str(len(_maps(record, "findings"))), "faults": str(len(_maps(record, "faults"))),
    }
    data = "".join(f' data-{k}="{esc(v)}"' for k, v in attrs.items())
    return (
        f'<section class="flow{" leak" if leak else ""}" id="flow-{number}"{data}>'
        f'<header><h2>#{number}</h2><span class="badge bg-{cls}">{esc(status_text(status))}</span>'
        f'<span class="target">{esc(request_label(record))}</span>'
        f'<span class="meta">{esc(record.get("time"))} · hop {esc(record.get("hop"))}</span></header>'
        f'<div class="flow-body">{diagram(record, known)}<div class="facts">{_details(record)}</div></div></section>'
    )


# -- the page ----------------------------------------------------------------------------


def summary_tables(summary: HopSummary) -> str:
    out = ['<div class="summary">']
    for title, rows in sections(summary.as_dict()):
        out.append(f'<table data-section="{esc(title)}"><tr><th>{esc(title)}</th><th>flows</th></tr>')
        out += [f'<tr><td>{esc(label)}</td><td class="n">{count}</td></tr>' for label, count in rows]
        if not rows:
            out.append('<tr><td>(none)</td><td class="n">0</td></tr>')
        out.append("</table>")
    out.append("</div>")
    return "".join(out)


def legend() -> str:
    items = [f'<span><i class="sw bg-{cls}"></i>{esc(text)}</span>' for cls, text in LEGEND]
    items.append('<span class="finding">⚠ credential leak finding</span>')
    items.append('<span class="fault">fault: injected by the scenario</span>')
    return '<div class="legend">' + "".join(items) + "</div>"


def render_report(records: Iterable[Mapping[str, Any] | None], max_flows: int = DEFAULT_MAX_FLOWS,
                  title: str = "mitm407 hop log", summary: HopSummary | None = None) -> str:
    """The whole page from records (None: an unreadable line), read once, in order.

    The summary counts every record; only the first ``max_flows`` records are
    kept and drawn, so a large log costs no more memory than that. They are drawn
    after the whole log is read, so an upstream is shown by the name it gave in
    any record (its address alone when it never gave one). A ``summary`` passed
    in (empty) is the one filled, for a caller that needs the counts too.
    """
    summary = HopSummary() if summary is None else summary
    kept: list[Mapping[str, Any]] = []
    for record in records:
        if record is None:
            summary.bad_lines += 1
            continue
        summary.add(record)
        if len(kept) < max_flows:
            kept.append(record)
    flows = [render_flow(number, record, summary.upstream_names) for number, record in enumerate(kept, start=1)]
    note = ""
    if summary.flows > len(flows):
        note = (f'<p class="note" data-capped="{len(flows)}">Showing the first {len(flows)} of {summary.flows} '
                "flows (option --max-flows); the summary counts all of them.</p>")
    headline = f"{summary.flows} flows" + (f", {summary.bad_lines} unreadable lines" if summary.bad_lines else "")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f'<body data-flows="{summary.flows}" data-shown="{len(flows)}">'
        f'<h1>{esc(title)}</h1><p class="sub">{esc(headline)}: who answered each request, and why. '
        "Secrets are never in the hop log.</p>"
        f"{summary_tables(summary)}{legend()}{note}{''.join(flows)}</body></html>\n"
    )


def render_lines(lines: Iterable[str], max_flows: int = DEFAULT_MAX_FLOWS, title: str = "mitm407 hop log") -> str:
    """Render hop-log JSON lines; lines that are not a JSON object are counted, not fatal."""
    return render_report(parse_lines(lines), max_flows, title)
