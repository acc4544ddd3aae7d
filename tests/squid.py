"""A real Squid (Debian's ``squid``) as an authenticating upstream proxy for tests.

Basic authentication through ``basic_ncsa_auth`` on an htpasswd file of
``$apr1$`` hashes (``openssl passwd -apr1``), no cache, 127.0.0.1 on a free
port. Squid drops privileges to user ``proxy``, so its folder is world-writable.
Squid runs in its own world-writable temp folder (user ``proxy`` cannot enter
pytest's 0700 folders); ``stop()`` copies its logs to the suite's log folder,
where the session-finish secret scan (tests/secretscan.py) greps them, and removes the temp folder.
Stopped like every test process: SIGINT to its process group, then SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from procs import free_port, stop_process, wait_for_port

SQUID = shutil.which("squid") or "/usr/sbin/squid"
NCSA_AUTH = "/usr/lib/squid/basic_ncsa_auth"
DIGEST_AUTH = "/usr/lib/squid/digest_file_auth"
VISIBLE_HOSTNAME = "squid-test"


@dataclass
class Squid:
    port: int
    proc: subprocess.Popen
    directory: Path
    log_copy: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return (self.directory / "cache.log").read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, grace=5.0)
        if self.directory.exists():
            self.log_copy.mkdir(parents=True, exist_ok=True)
            for name in ("cache.log", "access.log", "stdout.log"):
                if (self.directory / name).exists():
                    shutil.copy(self.directory / name, self.log_copy / name)
            shutil.rmtree(self.directory, ignore_errors=True)


def available() -> bool:
    return os.path.exists(SQUID) and os.path.exists(NCSA_AUTH) and shutil.which("openssl") is not None


def apr1_hash(password: str) -> str:
    """``openssl passwd -apr1``, the password on stdin (never on a command line)."""
    result = subprocess.run(
        ["openssl", "passwd", "-apr1", "-stdin"], input=password, capture_output=True, text=True, timeout=10,
        check=True,
    )
    return result.stdout.strip()


def start_squid(
    log_copy: Path, users: dict[str, str], realm: str = "Squid test proxy", digest_realm: str | None = None
) -> Squid:
    """Squid requiring Basic proxy auth for every request; its logs end up in ``log_copy``.

    With ``digest_realm`` it offers Digest first (``digest_file_auth``, same users), then Basic.
    """
    directory = Path(tempfile.mkdtemp(prefix="mitm407-squid-"))
    directory.chmod(0o777)
    htpasswd = directory / "htpasswd"
    htpasswd.write_text("".join(f"{user}:{apr1_hash(pw)}\n" for user, pw in users.items()), encoding="utf-8")
    htpasswd.chmod(0o644)
    digest = ""
    if digest_realm is not None:
        (directory / "digest").write_text("".join(f"{u}:{pw}\n" for u, pw in users.items()), encoding="utf-8")
        (directory / "digest").chmod(0o644)
        digest = f"auth_param digest program {DIGEST_AUTH} {directory}/digest\nauth_param digest realm {digest_realm}\n"
    port = free_port()
    config = directory / "squid.conf"
    config.write_text(
        f"""\
http_port 127.0.0.1:{port}
visible_hostname {VISIBLE_HOSTNAME}
pid_filename {directory}/squid.pid
cache_log {directory}/cache.log
access_log {directory}/access.log
coredump_dir {directory}
cache deny all
shutdown_lifetime 1 seconds
{digest}auth_param basic program {NCSA_AUTH} {htpasswd}
auth_param basic realm {realm}
auth_param basic children 2
acl authed proxy_auth REQUIRED
http_access allow authed
http_access deny all
""",
        encoding="utf-8",
    )
    with open(directory / "stdout.log", "wb") as out:
        proc = subprocess.Popen(
            [SQUID, "-N", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=directory,
        )
    squid = Squid(port, proc, directory, log_copy)
    try:
        wait_for_port(port, proc, timeout=30)
    except Exception:
        squid.stop()
        raise RuntimeError(f"squid did not start:\n{(directory / 'stdout.log').read_text()[-3000:]}") from None
    return squid
