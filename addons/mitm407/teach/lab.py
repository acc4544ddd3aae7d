"""Local processes for the matrix, the teaching demo and the tests.

Everything binds 127.0.0.1 on a free port and is stopped by whoever started
it: SIGINT to the process group first (a loaded mitmdump can ignore SIGTERM),
SIGKILL after a grace period. Standard library only, except the TLS
certificate helper, which uses ``cryptography`` (a mitmproxy dependency).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # addons/mitm407 in a checkout, site-packages/mitm407 installed
ADDONS_DIR = PACKAGE_DIR.parent

# Proxy settings a client could pick up from the environment and that would
# send local traffic around the proxy under test (NO_PROXY=127.0.0.1) or
# through another one.
PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen, grace: float = 8.0) -> None:
    """SIGINT the process group, then SIGKILL it if it does not exit in time."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without proxy variables (either case), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_ENV}
    env.update(extra or {})
    return env


def find_mitmproxy_tool(tool: str) -> str | None:
    """mitmproxy's ``tool`` (mitmdump, mitmweb) beside this interpreter (the venv's), else on PATH, else None.

    The one search every command that starts mitmproxy uses (run, web, capture,
    chain, demo, matrix); each decides what a missing one means.
    """
    beside = Path(sys.executable).parent / tool
    return str(beside) if beside.exists() else shutil.which(tool)


def find_mitmdump() -> str | None:
    return find_mitmproxy_tool("mitmdump")


def packaged_script(filename: str) -> str:
    """A ``-s`` script shipped inside the package (``proxyauth_script.py``): works installed and from a checkout."""
    return str(PACKAGE_DIR / filename)


def entry_script(name: str) -> str:
    """``addons/NAME.py`` (proxyauth, hoplog) in a checkout; the package's ``NAME_script.py`` when installed."""
    checkout = ADDONS_DIR / f"{name}.py"
    return str(checkout) if checkout.exists() else packaged_script(f"{name}_script.py")


def mitmdump_command(script: str, args: list[str], tool: str = "mitmdump") -> list[str]:
    """``tool`` (mitmdump, or mitmweb: the same command line) with the ``-s`` script and ``args``."""
    return [find_mitmproxy_tool(tool) or tool, "-s", script, *args]


@dataclass
class Mitmdump:
    """A running mitmdump with the mitm407 addon."""

    port: int
    proc: subprocess.Popen
    log_path: Path
    confdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    @property
    def ca_file(self) -> str:
        return str(self.confdir / "mitmproxy-ca-cert.pem")

    def stop(self) -> None:
        stop_process(self.proc)

    def wait_ready(self, what: str = "mitmdump") -> None:
        """Wait until it listens; if it dies or hangs instead, stop it and raise with its log's tail.

        Interrupted meanwhile (Ctrl-C: the process runs in its own session and never sees it), it is
        stopped too before the interrupt goes on: nobody else holds it yet.
        """
        try:
            wait_for_port(self.port, self.proc)
        except (RuntimeError, TimeoutError):
            self.give_up(f"{what} did not start")
        except BaseException:
            self.stop()
            raise

    def give_up(self, why: str) -> NoReturn:
        """Stop it and raise ``RuntimeError(why)`` with its log's tail: what a start-up failure shows."""
        self.stop()
        raise RuntimeError(f"{why}:\n{self.log[-4000:]}") from None


def start_mitm407(
    workdir: Path,
    scenario: str | os.PathLike[str],
    *,
    name: str = "mitmdump",
    hop_name: str | None = None,
    mode: str | None = None,
    confdir: Path | None = None,
    wait: bool = True,
    port: int | None = None,
    options: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Mitmdump:
    """mitmdump with the mitm407 addon on 127.0.0.1 (``port``, else a free one), logging to ``workdir``.

    ``options`` are more ``--set KEY=VALUE`` (e.g. a hop log); ``env``, more environment variables
    (secrets such as the control token: a command line is visible to every local user).
    """
    port = port or free_port()
    confdir = confdir or workdir / "confdir"
    confdir.mkdir(parents=True, exist_ok=True)
    args = mitmdump_command(entry_script("proxyauth"), ["--listen-host", "127.0.0.1", "-p", str(port)])
    args += ["--set", f"confdir={confdir}", "--set", "ssl_insecure=true", "--set", "connection_strategy=lazy"]
    args += ["--set", f"scenario={scenario}"]
    if hop_name:
        args += ["--set", f"hop_name={hop_name}"]
    if mode:
        args += ["--mode", mode]
    for key, value in (options or {}).items():
        args += ["--set", f"{key}={value}"]
    log_path = workdir / f"{name}-{port}.log"
    python_path = os.pathsep.join(filter(None, [str(ADDONS_DIR), os.environ.get("PYTHONPATH")]))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=clean_env({"PYTHONPATH": python_path, **(env or {})}), start_new_session=True,
        )
    dump = Mitmdump(port, proc, log_path, confdir)
    if wait:
        dump.wait_ready(name)
    return dump


def make_tls_context(directory: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "origin.crt", directory / "origin.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context
