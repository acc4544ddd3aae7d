"""Throughput of mitm407 against bare mitmdump and mitmproxy's built-in proxyauth (``make bench``).

One run starts a local nginx (tiny static file) and one mitmdump per
configuration of ``CONFIGS``, then drives ``wrk`` through each of them in
turn, for several rounds, each measurement between two of bare mitmdump
(bare, A, bare, B, ..., bare) so that it is compared with bare mitmdump
measured just before and after it; the ratios' medians over the rounds are
reported, never an absolute claim. Two measures:

- ``req/s``: wall-clock, what wrk sees; varies +-20 % on a shared machine.
- ``req/CPU-s``: requests per CPU-second of the proxy process (``/proc``
  utime+stime), with the proxies pinned to core 0 and nginx+wrk to core 1:
  repeatable within a few percent even when other work runs. Targets are
  checked against this one.

wrk sends one fixed request on kept-alive connections. What it cannot do
(an NTLM handshake needs fresh client tokens on every new connection) is
driven by ``perconn.py`` instead: Python threads opening a new connection
per handshake, compared with bare mitmdump under that same driver (one plain
request per new connection), the row's baseline; its "requests" are
handshakes.

Environment: ``BENCH_DURATION`` (seconds per measurement, default 2),
``BENCH_ROUNDS`` (default 7), ``BENCH_CONNECTIONS`` (default 10),
``BENCH_ONLY`` (comma-separated config keys; ``bare`` is always added),
``BENCH_OUT`` (folder for results.json/results.md, default ``bench/``).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import hotpath
import measure  # puts addons/ and tests/ on sys.path: keep it first
import perconn

import digestclient
from procs import PROXYAUTH, Mitmdump, free_port, start_mitmdump, stop_process, wait_for_port

USER, PASSWORD = "bench", "bench-pw-7f3a"  # throwaway credentials of this benchmark only


# -- the configurations: one line each ------------------------------------------------

BASIC_INLINE = f"""\
version: 1
name: bench-basic-inline
users: {{{USER}: "{PASSWORD}"}}
schemes: [basic]
"""

BASIC_HTPASSWD = """\
version: 1
name: bench-basic-htpasswd
htpasswd: users.htpasswd
schemes: [basic]
"""

Headers = Callable[["Setup", int], Mapping[str, str]]  # (setup, proxy port) -> headers; the proxy is running
Load = Callable[[float, int], dict[str, float]]  # (duration, connections) -> a wrk-shaped sample
LoadFactory = Callable[["Config", "Setup", int], Load]  # (config, setup, proxy port) -> its load; the proxy runs


def basic_headers(setup: Setup, proxy_port: int) -> Mapping[str, str]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {"Proxy-Authorization": f"Basic {token}"}


def wrong_basic_headers(setup: Setup, proxy_port: int) -> Mapping[str, str]:
    """A client retrying a wrong password (a stale CI secret): every answer is a 407."""
    token = base64.b64encode(f"{USER}:wrong-{PASSWORD}".encode()).decode()
    return {"Proxy-Authorization": f"Basic {token}"}


def no_headers(setup: Setup, proxy_port: int) -> Mapping[str, str]:
    return {}


def digest_rfc2069_scenario(algorithm: str) -> str:
    return f"""\
version: 1
name: bench-digest-{algorithm.lower()}
users: {{{USER}: "{PASSWORD}"}}
schemes: [digest]
digest: {{algorithms: [{algorithm}], qop: [], rfc2069: true, nonce_ttl: 86400}}
"""


def digest_rfc2069_headers(algorithm: str) -> Headers:
    """Ask once for a challenge, then send the same RFC 2069 answer (no qop, so no nonce count) with every
    request: wrk cannot hash per request, and this still runs the full Digest check each time. The
    scenario must allow RFC 2069 answers (``rfc2069: true``) for any algorithm, SHA-256 included."""
    def headers(setup: Setup, proxy_port: int) -> Mapping[str, str]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
        conn.request("GET", setup.url, headers={"Host": f"127.0.0.1:{setup.origin_port}"})
        response = conn.getresponse()
        response.read()
        conn.close()
        offered = [v for k, v in response.getheaders() if k.lower() == "proxy-authenticate"]
        challenge = next(v for v in offered if v.startswith("Digest"))
        params = digestclient.params_of(challenge)
        value = digestclient.answer(user=USER, password=PASSWORD, realm=params["realm"], nonce=params["nonce"],
                                    uri=setup.url, algorithm=algorithm, qop=None, opaque=params.get("opaque"))
        return {"Proxy-Authorization": f"Digest {value}"}
    return headers


NTLM = f"""\
version: 1
name: bench-ntlm
users: {{{USER}: "{PASSWORD}"}}
schemes: [ntlm]
"""


def plain_per_connection(setup: Setup) -> perconn.Exchange:
    return perconn.plain_exchange(setup.url, setup.host)


def ntlm_per_connection(setup: Setup) -> perconn.Exchange:
    return perconn.ntlm_exchange(setup.url, setup.host, USER, PASSWORD)


def wrk_load(config: Config, setup: Setup, proxy_port: int) -> Load:
    """wrk sending one fixed request (``config.headers``) on kept-alive connections: most rows."""
    script = write_wrk_script(config, setup, proxy_port)
    return lambda duration, connections: run_wrk(script, proxy_port, duration, connections)


def new_connection_load(exchange: Callable[[Setup], perconn.Exchange]) -> LoadFactory:
    """bench/perconn.py's threads, one new connection per ``exchange``: what wrk cannot do (NTLM)."""
    def factory(config: Config, setup: Setup, proxy_port: int) -> Load:
        unit = exchange(setup)
        return lambda duration, connections: perconn.drive(proxy_port, unit, duration, connections)
    return factory


@dataclass(frozen=True)
class Config:
    """One row of the results. ``{dir}`` in option values is the run's temp folder."""

    key: str
    label: str
    scenario: str | None = None  # YAML text: mitmdump runs addons/proxyauth.py with it
    scripts: tuple[str, ...] = ()  # other mitmdump -s scripts (paths relative to the repository)
    options: Mapping[str, str] = field(default_factory=dict)  # extra --set NAME=VALUE
    headers: Headers = no_headers  # request headers wrk sends (credentials)
    load: LoadFactory = wrk_load  # what drives the proxy: wrk, or a new-connection driver
    expect: int = 200  # every response must have this status
    requires: tuple[str, ...] = ()  # modules that must exist, else the row is "n/a"
    target: float | None = None  # minimum req/CPU-s ratio to ``baseline``
    baseline: str = "bare"

    def available(self) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in self.requires)


CONFIGS: tuple[Config, ...] = (
    Config("bare", "bare mitmdump (no auth)"),
    Config("noop-script", "mitmdump + an empty addon script (floor)", scripts=("bench/noop_addon.py",)),
    Config("builtin-plain", "built-in proxyauth, plain password", options={"proxyauth": f"{USER}:{PASSWORD}"},
           headers=basic_headers),
    Config("builtin-bcrypt", "built-in proxyauth, bcrypt htpasswd", options={"proxyauth": "@{dir}/users.htpasswd"},
           headers=basic_headers),
    Config("basic-inline", "mitm407 Basic, inline password", BASIC_INLINE, headers=basic_headers, target=0.95),
    Config("basic-htpasswd", "mitm407 Basic, bcrypt htpasswd", BASIC_HTPASSWD, headers=basic_headers, target=0.95),
    Config("407", "mitm407 407 path (no credentials)", BASIC_INLINE, expect=407),
    Config("407-bcrypt-wrong", "mitm407 407, wrong password of a bcrypt user", BASIC_HTPASSWD,
           headers=wrong_basic_headers, expect=407),
    Config("basic-hoplog", "mitm407 Basic + hop log", BASIC_INLINE, options={"hoplog": "{dir}/hops.jsonl"},
           headers=basic_headers, requires=("mitm407.hoplog",), target=0.97, baseline="basic-inline"),
    Config("digest-md5", "mitm407 Digest MD5 (an RFC 2069 answer, replayed)", digest_rfc2069_scenario("MD5"),
           headers=digest_rfc2069_headers("MD5"), requires=("mitm407.schemes.digest",), target=0.90),
    Config("digest-sha256", "mitm407 Digest SHA-256 (an RFC 2069 answer, replayed)",
           digest_rfc2069_scenario("SHA-256"), headers=digest_rfc2069_headers("SHA-256"),
           requires=("mitm407.schemes.digest",), target=0.90),  # the "Digest >= 0.90x": both
    # NTLM authenticates a connection: a handshake per new connection, driven by bench/perconn.py and
    # compared with bare mitmdump under the same driver (one plain request per new connection).
    Config("bare-newconn", "bare mitmdump, 1 request per new connection (driver)",
           load=new_connection_load(plain_per_connection)),
    Config("ntlm-handshake", "mitm407 NTLM handshakes, 1 per new connection (driver)", NTLM,
           load=new_connection_load(ntlm_per_connection), requires=("spnego", "mitm407.schemes.ntlm"),
           baseline="bare-newconn"),
)


# -- processes -----------------------------------------------------------------------------


@dataclass
class Setup:
    """The run's shared pieces: temp folder, origin URL."""

    dir: Path
    origin_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.origin_port}/index.html"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.origin_port}"


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp-body;
    proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi;
    uwsgi_temp_path {dir}/tmp-uwsgi;
    scgi_temp_path {dir}/tmp-scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
    }}
}}
"""


def start_nginx(setup: Setup) -> subprocess.Popen:
    (setup.dir / "www").mkdir()
    (setup.dir / "www" / "index.html").write_text("<html><body>mitm407 bench</body></html>\n")
    conf = setup.dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=setup.dir, port=setup.origin_port))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    args = [*measure.taskset(measure.LOAD_CPU), nginx, "-p", str(setup.dir), "-c", str(conf)]
    args += ["-e", str(setup.dir / "nginx-error.log")]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    wait_for_port(setup.origin_port, proc, timeout=10)
    return proc


def write_htpasswd(setup: Setup) -> None:
    import bcrypt

    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    (setup.dir / "users.htpasswd").write_text(f"{USER}:{hashed}\n")


def start_proxy(config: Config, setup: Setup) -> Mitmdump:
    options = {key: value.format(dir=setup.dir) for key, value in config.options.items()}
    options["flow_detail"] = "0"  # no per-flow printing: measure proxying, not the terminal
    scripts = tuple(str(measure.REPO / script) for script in config.scripts)
    if config.scenario is not None:
        scenario = setup.dir / f"{config.key}.yaml"
        scenario.write_text(config.scenario)
        options["scenario"] = str(scenario)
        scripts = (PROXYAUTH, *scripts)
    confdir = setup.dir / f"confdir-{config.key}"  # one each: proxies starting together race to write a CA
    confdir.mkdir()
    dump = start_mitmdump(setup.dir, confdir, options=options, scripts=scripts, name=config.key, wait=False)
    measure.pin(dump.proc.pid, measure.PROXY_CPU)
    return dump


# -- wrk -----------------------------------------------------------------------------------

WRK_SCRIPT = """\
local req = wrk.format("GET", "{url}", {{{headers}}})
request = function() return req end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {{"requests": %d, "duration_us": %d, "status": %d, "connect": %d, '
    .. '"read": %d, "write": %d, "timeout": %d}}\\n', summary.requests, summary.duration, e.status,
    e.connect, e.read, e.write, e.timeout))
end
"""


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_wrk_script(config: Config, setup: Setup, proxy_port: int) -> Path:
    """wrk through a forward proxy: absolute URL and an explicit Host header (FACTS.md)."""
    headers = {"Host": setup.host, **config.headers(setup, proxy_port)}
    fields = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
    path = setup.dir / f"{config.key}.lua"
    path.write_text(WRK_SCRIPT.format(url=setup.url, headers=fields))
    return path


def wait_idle(pid: int, timeout: float = 60.0) -> None:
    """Let the proxy drain the previous run's backlog (slow bcrypt rows) before measuring again."""
    deadline = time.monotonic() + timeout
    last = measure.cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = measure.cpu_seconds(pid)
        if now - last < 0.03:  # under 15 % of a core
            return
        last = now


def run_wrk(script: Path, proxy_port: int, duration: float, connections: int) -> dict[str, float]:
    args = [*measure.taskset(measure.LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    args += ["--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{proxy_port}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60, stdin=subprocess.DEVNULL)
    match = re.search(r"^WRKJSON (\{.*\})$", out.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-500:]}{out.stderr[-500:]}")
    data = json.loads(match.group(1))
    data["seconds"] = data["duration_us"] / 1e6
    return data


def run_load(proxy: Mitmdump, load: Load, duration: float, connections: int) -> dict[str, float]:
    """One measurement, whatever drives it: the sample plus the proxy's CPU seconds meanwhile."""
    wait_idle(proxy.proc.pid)
    cpu_before = measure.cpu_seconds(proxy.proc.pid)
    data = load(duration, connections)
    data["cpu_s"] = measure.cpu_seconds(proxy.proc.pid) - cpu_before
    return data


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Row:
    config: Config
    proxy: Mitmdump | None = None
    load: Load | None = None
    samples: list[dict[str, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_sample(row: Row, sample: dict[str, float]) -> None:
    """Every response must be the expected status: a wrong row must not look fast."""
    failed = sample["connect"] + sample["read"] + sample["write"] + sample["timeout"]
    bad_status = sample["status"] if row.config.expect < 400 else sample["requests"] - sample["status"]
    if failed or bad_status or not sample["requests"]:
        row.problems.append(
            f"{int(bad_status)} responses not {row.config.expect}, {int(failed)} socket errors/timeouts "
            f"of {int(sample['requests'])}"
        )


def rps(s: dict[str, float]) -> float:
    return s["requests"] / s["seconds"]


def rpc(s: dict[str, float]) -> float:
    return s["requests"] / max(s["cpu_s"], 1e-9)


MEASURES: dict[str, Callable[[dict[str, float]], float]] = {"rps": rps, "per_cpu_s": rpc}


def measure_once(row: Row, number: int, rounds: int, duration: float, connections: int) -> dict[str, float]:
    assert row.proxy is not None and row.load is not None
    sample = run_load(row.proxy, row.load, duration, connections)
    sample["round"] = number
    check_sample(row, sample)
    row.samples.append(sample)
    print(f"round {number + 1}/{rounds} {row.config.key:16} {rps(sample):8.1f} req/s {rpc(sample):8.1f} req/CPU-s",
          flush=True)
    return sample


def measure_all(configs: list[Config], duration: float, rounds: int, connections: int) -> dict[str, Row]:
    rows = {c.key: Row(c) for c in configs}
    with tempfile.TemporaryDirectory(prefix="mitm407-bench-") as tmp:
        setup = Setup(Path(tmp), free_port())
        write_htpasswd(setup)
        nginx = start_nginx(setup)
        try:
            live = [row for row in rows.values() if row.config.available()]
            for row in live:
                row.proxy = start_proxy(row.config, setup)
            for row in live:
                assert row.proxy is not None
                try:
                    wait_for_port(row.proxy.port, row.proxy.proc, timeout=60)
                except (RuntimeError, TimeoutError):
                    raise RuntimeError(f"{row.config.key}: mitmdump did not start:\n{row.proxy.log[-3000:]}") from None
                measure.pin(row.proxy.proc.pid, measure.PROXY_CPU)
                row.load = row.config.load(row.config, setup, row.proxy.port)
            for row in live:  # warm-up: imports, first bcrypt, caches
                run_load(row.proxy, row.load, 1, connections)
            bare = rows["bare"]
            others = [row for row in live if row is not bare]
            for number in range(rounds):
                # bare, A, bare, B, ..., bare: each row is normalised by the bare runs on either side,
                # so load that drifts during a round cancels out; the order rotates every round.
                order = others[number % len(others):] + others[: number % len(others)] if others else []
                if number % 2:
                    order.reverse()
                before = measure_once(bare, number, rounds, duration, connections)
                for row in order:
                    sample = measure_once(row, number, rounds, duration, connections)
                    after = measure_once(bare, number, rounds, duration, connections)
                    for name, fn in MEASURES.items():
                        sample[f"bare_{name}"] = (fn(before) + fn(after)) / 2
                    before = after
            for row in live:
                if "Traceback" in row.proxy.log:
                    row.problems.append("traceback in the proxy log")
        finally:
            for row in rows.values():
                if row.proxy is not None:
                    row.proxy.stop()
            stop_process(nginx)
    return rows


def summarize(rows: dict[str, Row]) -> list[dict[str, object]]:
    """Per row: medians, and medians over rounds of its ratio to the baseline.

    A sample is first divided by the mean of the bare runs just before and after it; the ratio to
    a baseline other than bare divides those normalised values of the same round.
    """
    def normalised(row: Row, name: str) -> dict[int, float]:
        if row.config.key == "bare":
            return {int(s["round"]): 1.0 for s in row.samples}
        return {int(s["round"]): MEASURES[name](s) / s[f"bare_{name}"] for s in row.samples if s.get(f"bare_{name}")}

    out = []
    for row in rows.values():
        c = row.config
        entry: dict[str, object] = {"key": c.key, "label": c.label, "baseline": c.baseline, "target": c.target,
                                    "driver": "wrk" if c.load is wrk_load else "new connection per unit"}
        base = rows.get(c.baseline)
        if not row.samples or base is None or not base.samples:
            entry.update(available=False, note="n/a: " + (", ".join(c.requires) + " not present"
                                                          if not c.available() else "no baseline"))
            out.append(entry)
            continue
        result = {}
        for name, fn in MEASURES.items():
            mine, theirs = normalised(row, name), normalised(base, name)
            ratios = [mine[r] / theirs[r] for r in mine if theirs.get(r)]
            result[name] = measure.median(fn(s) for s in row.samples)
            result[f"{name}_ratio"] = measure.median(ratios)
            result[f"{name}_ratio_range"] = [min(ratios), max(ratios)]  # the noise, shown beside the median
        entry.update(available=True, **result, rounds=len(row.samples), problems=row.problems, samples=row.samples)
        if c.target is not None:
            entry["meets_target"] = bool(result["per_cpu_s_ratio"] >= c.target) and not row.problems
            entry["within_noise"] = bool(result["per_cpu_s_ratio_range"][1] >= c.target)
        out.append(entry)
    return out


def hook_line(hook: dict[str, float], summary: list[dict[str, object]]) -> str:
    """The addon's own per-request cost (in process, noise-free) against bare mitmdump's CPU per request."""
    bare = next((e for e in summary if e["key"] == "bare" and e.get("available")), None)
    share = ""
    if bare:
        share = f" = {hook['basic_cached_us'] * bare['per_cpu_s'] / 1e4:.1f} % of bare mitmdump's CPU per request"
    line = (f"mitm407's `requestheaders` hook timed in process (CPU time, best of {hotpath.ROUNDS}): "
            f"{hook['basic_cached_us']:.1f} µs per request with cached Basic credentials{share}; "
            f"{hook['challenge_407_us']:.1f} µs to build a 407 (without its log line).")
    if "all_addons_basic_us" in hook:
        line += (" Every hook of every addon `addons/proxyauth.py` installs (requestheaders, request, "
                 f"responseheaders, response): Basic {hook['all_addons_basic_us']:.1f} µs, with the hop log "
                 f"file {hook['all_addons_basic_hoplog_us']:.1f} µs, Digest MD5 {hook['all_addons_digest_us']:.1f} µs, "
                 f"a 407 {hook['all_addons_407_us']:.1f} µs per request.")
    return line


def markdown(summary: list[dict[str, object]], info: dict[str, object], settings: dict[str, object],
             hook: dict[str, float] | None = None) -> str:
    lines = [
        f"Measured {info['date_utc']} UTC on `{info['host']}` ({info['cores']} cores, {info['cpu']}), "
        f"Python {info['python']}, mitmproxy {info['mitmproxy']}; load average {info['loadavg']:.2f} at start. "
        f"wrk -t1 -c{settings['connections']}, {settings['rounds']} interleaved rounds of {settings['duration']} s, "
        "nginx static file as origin, proxy pinned to core 0, nginx+wrk to core 1.",
        "",
        "| configuration | req/s (median) | × bare | req per CPU-s | × bare (CPU), range | target | met |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for e in summary:
        if not e.get("available"):
            lines.append(f"| {e['label']} | n/a | | | | {fmt_target(e)} | {e.get('note', 'n/a')} |")
            continue
        met = ""
        if e["target"] is not None:
            met = "yes" if e.get("meets_target") else ("no (within noise)" if e.get("within_noise") else "**no**")
        if e["problems"]:
            met = "**invalid**: " + "; ".join(sorted(set(e["problems"])))
        low, high = e["per_cpu_s_ratio_range"]
        lines.append(
            f"| {e['label']} | {e['rps']:.0f} | {e['rps_ratio']:.2f} | {e['per_cpu_s']:.0f} | "
            f"{e['per_cpu_s_ratio']:.2f} ({low:.2f}–{high:.2f}) | {fmt_target(e)} | {met} |"
        )
    lines.append("")
    lines.append("Every measurement runs between two of bare mitmdump (bare, A, bare, B, ..., bare) and is "
                 "divided by their mean; ratios are the medians over the rounds (to bare mitmdump unless the "
                 "target names another row), with the lowest and highest round in parentheses: that spread "
                 "is the measurement noise. Targets are checked on the CPU ratio.")
    if any(e.get("driver", "wrk") != "wrk" for e in summary):
        lines.append("")
        lines.append(f"Rows marked (driver) run bench/perconn.py, not wrk: {settings['connections']} Python threads, "
                     "each opening a new connection per unit (an NTLM handshake: type 1, 407 with the type 2, "
                     "type 3, 200; or one plain request), on core 1; their req/s and req per CPU-s count those "
                     "units, and their ratio is to bare mitmdump under the same driver.")
    if hook:
        lines += ["", hook_line(hook, summary)]
    return "\n".join(lines) + "\n"


def fmt_target(e: dict[str, object]) -> str:
    if e["target"] is None:
        return "" if e["baseline"] == "bare" else f"none (ratio to {e['baseline']})"
    base = "" if e["baseline"] == "bare" else f" of {e['baseline']}"
    return f"≥ {e['target']:.2f}×{base}"


def main() -> int:
    if not shutil.which("wrk"):
        print("wrk is not installed: tools/ensure-debian-packages wrk nginx-light", file=sys.stderr)
        return 2
    duration = float(os.environ.get("BENCH_DURATION", "2"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "7"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "10"))
    only = {k for k in os.environ.get("BENCH_ONLY", "").split(",") if k}
    configs = [c for c in CONFIGS if not only or c.key in only or c.key == "bare"
               or any(o.baseline == c.key for o in CONFIGS if o.key in only)]
    out_dir = Path(os.environ.get("BENCH_OUT", measure.REPO / "bench"))
    info = measure.machine()
    settings = {"duration": duration, "rounds": rounds, "connections": connections}
    print(textwrap.dedent(f"""\
        mitm407 bench: {len(configs)} configurations x {rounds} rounds x {duration:g} s, wrk -c{connections};
        {'proxies pinned to core 0, nginx+wrk to core 1' if measure.can_pin() else 'one core: no pinning'}"""),
          flush=True)
    rows = measure_all(configs, duration, rounds, connections)
    summary = summarize(rows)
    hook = hotpath.hook_costs()
    table = markdown(summary, info, settings, hook)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(
        json.dumps({"machine": info, "settings": settings, "hook": hook, "results": summary}, indent=2) + "\n")
    (out_dir / "results.md").write_text(table)
    print()
    print(table)
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'results.md'}")
    invalid = [e["key"] for e in summary if e.get("problems")]
    if invalid:
        print(f"invalid rows (wrong statuses or errors): {', '.join(map(str, invalid))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
