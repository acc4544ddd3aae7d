"""The matrix's rows: one ``Client`` per real client (and notable variant).

Each client has a ``probe`` that returns its version, or None when it is not
installed (the row then reads "not installed", never a failure), and a
``run`` that makes ONE request through the proxy the way that client is
normally configured and reports what the client itself said: the final
status it saw, its exit code and a short excerpt of its error.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from mitm407.teach.lab import clean_env
from mitm407.teach.matrix.cases import select_by_id

HERE = Path(__file__).resolve().parent
TIMEOUT = 40.0


@dataclass(frozen=True)
class Attempt:
    """One request to make: what, through which proxy, with which credentials."""

    url: str  # the page (curl, Python, Node, Java); git and pip derive theirs from base_url
    base_url: str  # origin root, e.g. http://127.0.0.1:PORT
    proxy_port: int
    user: str | None
    password: str | None
    challenge: bool
    scheme: str  # the scheme the case is about: basic, digest, ntlm (clients with a choice use it)
    ca_file: str | None  # mitmproxy's CA, for HTTPS (the proxy intercepts the tunnel)
    workdir: Path  # a fresh empty directory for this attempt
    toolsdir: Path  # shared per-run build output (compiled Java)
    # Kerberos: the proxy's name must match its service key (HTTP/localhost), and the client reads the
    # realm's krb5.conf and credential cache from the environment (KRB5_CONFIG, KRB5CCNAME)
    proxy_host: str = "127.0.0.1"
    env: Mapping[str, str] = field(default_factory=dict)
    krb5_conf: str | None = None
    # TLS to the proxy itself: mitmproxy's CA, which signs the certificate the proxy presents (None: plain HTTP)
    proxy_ca: str | None = None

    @property
    def negotiate(self) -> bool:
        return self.scheme == "negotiate"

    def proxy_url(self, with_credentials: bool = True) -> str:
        scheme = "https" if self.proxy_ca else "http"
        where = f"{self.proxy_host}:{self.proxy_port}"
        if self.user is None or not with_credentials:
            return f"{scheme}://{where}"
        return f"{scheme}://{quote(self.user, safe='')}:{quote(self.password or '', safe='')}@{where}"


@dataclass(frozen=True)
class Observation:
    status: int | None  # the final HTTP status the client reported, None if it gave none
    exit_code: int | None = 0
    detail: str = ""  # the client's own error text, excerpted


@dataclass(frozen=True)
class Client:
    id: str
    name: str
    probe: Callable[[], str | None]
    run: Callable[[Attempt], Observation]
    prepare: Callable[[Path], str | None] = field(default=lambda toolsdir: None)  # error text if it cannot
    schemes: frozenset[str] | None = None  # a row about some schemes only (None: every case)
    proxy_tls: bool = True  # False: the client has no way to be told to talk TLS to a proxy


# -- helpers --------------------------------------------------------------------

# CA bundle overrides a machine may set globally. The matrix gives each client
# the CA explicitly; these would override that (GIT_SSL_CAINFO beats
# http.sslCAInfo, REQUESTS_CA_BUNDLE beats pip --cert) and measure the machine.
CA_ENV = (
    "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS", "PIP_CERT",
)


def client_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """No proxy variables, no CA overrides, plus ``extra``."""
    env = clean_env(extra)
    for name in CA_ENV:
        env.pop(name, None)
    return env


STATUS_PATTERNS = (
    re.compile(r"^STATUS (\d{3})$", re.M),
    re.compile(r"returned error: (\d{3})"),
    re.compile(r"HTTP code (\d{3}) from proxy"),
    re.compile(r"Tunnel connection failed: (\d{3})"),
    re.compile(r"CONNECT tunnel failed, response (\d{3})"),
    re.compile(r"\b(\d{3}) (?:Client|Server) Error"),
    re.compile(r"\b(\d{3}) Proxy Authentication Required"),
    re.compile(r"Proxy response \((\d{3})\)"),
)


def find_status(text: str) -> int | None:
    """The HTTP status a client's output names, by the phrases clients use."""
    for pattern in STATUS_PATTERNS:
        match = pattern.search(text)
        if match:
            return int(match.group(1))
    return None


def excerpt(text: str, limit: int = 110) -> str:
    """The most telling line of a client's output, shortened for a table cell."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("STATUS ")]
    if "Traceback (most recent call last)" in text:
        telling = [line for line in lines if re.match(r"[\w.]+(Error|Exception)\b", line)][-1:]
    else:
        telling = [line for line in lines if re.search(r"error|fatal|fail|denied|refused|exception", line, re.I)]
    line = (telling or lines or [""])[0 if telling else -1]
    line = re.sub(r"^(ERROR|fatal|error):?\s*", "", line)
    line = re.sub(r"https?://[^\s'\"]*@", "http://…@", line)  # never a credential from a URL
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def execute(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int | None, str]:
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, errors="replace", timeout=TIMEOUT,
            stdin=subprocess.DEVNULL, env=env or client_env(), cwd=cwd,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {TIMEOUT:.0f} s"
    return done.returncode, done.stdout + "\n" + done.stderr


def observe(code: int | None, output: str, success_status: int | None = None) -> Observation:
    """Status from the output, or ``success_status`` when the tool exited 0 without naming one."""
    status = find_status(output)
    if status is None and code == 0:
        status = success_status
    return Observation(status, code, "" if code == 0 and status == 200 else excerpt(output))


def first_line_version(args: list[str], pattern: str) -> str | None:
    if shutil.which(args[0]) is None:
        return None
    code, output = execute(args)
    match = re.search(pattern, output)
    return match.group(1) if match else None


def python_package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# -- curl -------------------------------------------------------------------------


CURL_SCHEME_OPTIONS = {"digest": "--proxy-digest", "ntlm": "--proxy-ntlm"}


def run_curl(a: Attempt) -> Observation:
    args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{http_connect}", "--max-time", "30"]
    args += ["-x", a.proxy_url(with_credentials=False)]
    if a.negotiate:  # the ticket is the credential: an empty user name makes curl use it (curl's docs)
        args += ["--proxy-negotiate", "--proxy-user", ":"]
    elif a.user is not None:
        args += ["--proxy-user", f"{a.user}:{a.password}"]
        if a.challenge:  # the scheme's own option: curl sends nothing until the 407 names it
            args += [CURL_SCHEME_OPTIONS.get(a.scheme, "--proxy-anyauth")]
    if a.ca_file:
        args += ["--cacert", a.ca_file]
    if a.proxy_ca:
        args += ["--proxy-cacert", a.proxy_ca]
    code, output = execute([*args, a.url], env=client_env(a.env))
    codes = [int(c) for c in output.split()[:2] if c.isdigit() and int(c)]
    status = codes[0] if codes else find_status(output)
    return Observation(status, code, "" if code == 0 else excerpt(output.split("\n", 1)[-1]))


# -- Python libraries --------------------------------------------------------------


def python_client(library: str) -> Callable[[Attempt], Observation]:
    def run(a: Attempt) -> Observation:
        args = [sys.executable, str(HERE / "pyclient.py"), library, a.url, str(a.proxy_port)]
        args += ["--proxy-host", a.proxy_host]
        if a.user is not None:
            args += ["--user", a.user, "--password", a.password or ""]
        if a.challenge:
            args += ["--challenge", a.scheme]
        if a.ca_file:
            args += ["--ca", a.ca_file]
        if a.proxy_ca:
            args += ["--proxy-ca", a.proxy_ca]
        return observe(*execute(args, env=client_env(a.env)))

    return run


# -- git --------------------------------------------------------------------------


def run_git(a: Attempt) -> Observation:
    home = a.workdir / "home"
    home.mkdir()
    env = client_env({"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", **a.env})
    env.pop("GIT_ASKPASS", None)
    env.pop("SSH_ASKPASS", None)
    # Negotiate: git hands libcurl proxy credentials only with a user name in the URL; an empty one will do
    proxy = a.proxy_url(with_credentials=False).replace("://", "://:@") if a.negotiate else a.proxy_url()
    args = ["git", "-c", f"http.proxy={proxy}", "-c", "credential.helper="]
    if a.negotiate:
        args += ["-c", "http.proxyAuthMethod=negotiate"]
    elif a.challenge:
        args += ["-c", "http.proxyAuthMethod=anyauth"]
    if a.ca_file:
        args += ["-c", f"http.sslCAInfo={a.ca_file}"]
    if a.proxy_ca:
        args += ["-c", f"http.proxySSLCAInfo={a.proxy_ca}"]
    args += ["clone", "-q", f"{a.base_url}/repo.git", str(a.workdir / "clone")]
    code, output = execute(args, env=env)
    return observe(code, output, success_status=200 if (a.workdir / "clone" / "README").exists() else None)


# -- pip --------------------------------------------------------------------------


def pip_version() -> str | None:
    code, output = execute([sys.executable, "-m", "pip", "--version"])
    match = re.search(r"pip (\S+)", output) if code == 0 else None
    return f"{match.group(1)} (Python {platform.python_version()})" if match else None


def run_pip(a: Attempt) -> Observation:
    env = {k: v for k, v in client_env().items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = "/dev/null"  # no site/user config: only this index, no find-links
    dest = a.workdir / "download"
    args = [sys.executable, "-m", "pip", "download", "--isolated", "--no-deps", "--no-cache-dir"]
    args += ["--disable-pip-version-check", "--retries", "0", "--timeout", "20", "-d", str(dest)]
    args += ["--proxy", a.proxy_url(), "--index-url", f"{a.base_url}/simple/"]
    if a.ca_file:
        args += ["--cert", a.ca_file]
    code, output = execute([*args, "mitm407-probe"], env={**env, **a.env})
    got = any(dest.glob("*.whl")) if dest.exists() else False
    return observe(code, output, success_status=200 if got else None)


# -- Node -------------------------------------------------------------------------


def run_node(a: Attempt) -> Observation:
    args = ["node", str(HERE / "nodeclient.js"), a.url, str(a.proxy_port)]
    if a.user is not None:
        args += [a.user, a.password or ""]
    if a.ca_file:
        args += ["--ca", a.ca_file]
    if a.proxy_ca:
        args += ["--proxy-ca", a.proxy_ca]
    return observe(*execute(args, env=client_env(a.env)))


def undici_dir() -> Path | None:
    """undici from npm, installed by `make matrix` into the venv (or where MITM407_UNDICI points)."""
    import os

    candidates = [os.environ.get("MITM407_UNDICI", ""), str(Path(sys.prefix) / "node" / "node_modules" / "undici")]
    return next((Path(c) for c in candidates if c and (Path(c) / "package.json").exists()), None)


def undici_version() -> str | None:
    import json

    found = undici_dir()
    if found is None or shutil.which("node") is None:
        return None
    node = first_line_version(["node", "--version"], r"(v\S+)")
    return f"{json.loads((found / 'package.json').read_text())['version']} (Node {node})"


def run_undici(a: Attempt) -> Observation:
    args = ["node", str(HERE / "undiciclient.js"), a.url, a.proxy_url()]
    if a.ca_file:
        args += ["--ca", a.ca_file]
    if a.proxy_ca:
        args += ["--proxy-ca", a.proxy_ca]
    return observe(*execute(args, env=client_env({"UNDICI": str(undici_dir()), **a.env})))


# -- Java -------------------------------------------------------------------------


def java_version() -> str | None:
    if shutil.which("javac") is None:
        return None
    return first_line_version(["java", "-version"], r'version "([^"]+)"')


JAVA_SOURCES = ("Client", "UrlConnectionClient")


def compile_java(toolsdir: Path) -> str | None:
    """Both Java clients, once per run (the rows share the output directory)."""
    out = toolsdir / "java"
    if all((out / f"{name}.class").exists() for name in JAVA_SOURCES):
        return None
    out.mkdir(parents=True, exist_ok=True)
    code, output = execute(["javac", "-d", str(out), *(str(HERE / f"{name}.java") for name in JAVA_SOURCES)])
    return None if code == 0 else f"javac failed: {excerpt(output)}"


def java_client(*jvm_flags: str, main: str = "Client") -> Callable[[Attempt], Observation]:
    def run(a: Attempt) -> Observation:
        flags = list(jvm_flags)
        if a.krb5_conf:  # JGSS: the realm's configuration, and the ticket cache rather than a JAAS login
            flags += [f"-Djava.security.krb5.conf={a.krb5_conf}", "-Djavax.security.auth.useSubjectCredsOnly=false"]
        args = ["java", *flags, "-cp", str(a.toolsdir / "java"), main, a.url, a.proxy_host, str(a.proxy_port)]
        if a.user is not None:
            args += [a.user, a.password or ""]
        if a.ca_file:
            args += ["--ca", a.ca_file]
        return observe(*execute(args, env=client_env(a.env)))

    return run


CLIENTS: tuple[Client, ...] = (
    Client("curl", "curl", lambda: first_line_version(["curl", "--version"], r"curl (\S+)"), run_curl),
    Client("urllib", "Python urllib", platform.python_version, python_client("urllib")),
    Client("requests", "requests", lambda: python_package_version("requests"), python_client("requests")),
    Client("httpx", "httpx", lambda: python_package_version("httpx"), python_client("httpx")),
    Client("git", "git", lambda: first_line_version(["git", "--version"], r"git version (\S+)"), run_git),
    Client("pip", "pip download", pip_version, run_pip),
    Client("node", "Node node:http", lambda: first_line_version(["node", "--version"], r"(v\S+)"), run_node),
    Client("undici", "undici ProxyAgent", undici_version, run_undici),
    Client("java", "Java HttpClient", java_version, java_client(), compile_java, proxy_tls=False),
    Client(
        "java-tunnel-basic",
        "Java HttpClient, `-Djdk.http.auth.tunneling.disabledSchemes=`",
        java_version,
        java_client("-Djdk.http.auth.tunneling.disabledSchemes="),
        compile_java,
        proxy_tls=False,
    ),
    Client(
        "java-urlconnection",
        "Java HttpURLConnection",
        java_version,
        java_client(main="UrlConnectionClient"),
        compile_java,
        proxy_tls=False,
    ),
    Client(
        "python-gssapi",
        "Python gssapi (Negotiate token by hand)",
        lambda: python_package_version("gssapi"),
        python_client("gssapi"),
        schemes=frozenset({"negotiate"}),
    ),
)


def select_clients(ids: list[str] | None) -> tuple[Client, ...]:
    return select_by_id(CLIENTS, ids, "client")
