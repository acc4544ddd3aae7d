"""A throwaway Kerberos realm (MIT krb5kdc) in one directory, for demos and tests.

Why not k5test's ``K5Realm``: it binds fixed ports (61000+), so two realms on
one machine (parallel test runs, a demo beside the tests) collide, and it
creates principals of its own. This is the same few commands with a free
port: ``kdb5_util create``, ``kadmin.local`` (principals and passwords on its
stdin, so no password is ever on a command line), ``krb5kdc -n`` in the foreground.

Everything lives in ``directory``: the database, ``kdc.conf``,
``krb5.conf``, the proxy keytab, the client credential cache and ``env``
(``KRB5_CONFIG``, ``KRB5CCNAME`` as shell assignments). The service key is
derived from a fixed demo password, so the keytab shipped beside the
``negotiate-kerberos`` scenario matches every realm made here (same realm,
principal, password and salt give the same keys; kvno 1 in a fresh database).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mitm407.teach.lab import free_port, stop_process, wait_for_port

REALM = "CORP.TEST"
SERVICE = "HTTP/localhost"
# Demo only, like the scenario's user passwords: it makes the shipped keytab match every realm made here.
SERVICE_PASSWORD = "mitm407-demo-service-key"
ENCTYPES = "aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal"
TOOLS = ("kdb5_util", "kadmin.local", "krb5kdc")
DEBIAN_PACKAGES = "krb5-kdc krb5-admin-server krb5-user"


# What a realm writes into its directory (besides the database, principal*): ``clear`` removes only these.
FILES = frozenset(
    {"stash", "kdc.conf", "krb5.conf", "kadm5.acl", "proxy.keytab", "ccache", "env", "kdc.log", "krb5kdc.out"}
    | {"kdc.pid"}
)


class RealmError(RuntimeError):
    """The realm could not be made; the message says which step and why (no secrets)."""


def find_tool(name: str) -> str | None:
    """Debian puts the KDC tools in /usr/sbin, which is not on every user's PATH."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if find_tool(t) is None]


@dataclass
class Realm:
    """``start()`` makes and starts it, ``stop()`` ends the KDC; usable as a context manager."""

    directory: Path
    users: Mapping[str, str] = field(default_factory=dict)  # principal name (no realm) -> password
    realm: str = REALM
    service: str = SERVICE
    port: int = 0
    clockskew: int = 300
    process: subprocess.Popen[bytes] | None = None

    @property
    def krb5_conf(self) -> Path:
        return self.directory / "krb5.conf"

    @property
    def keytab(self) -> Path:
        return self.directory / "proxy.keytab"

    @property
    def ccache(self) -> Path:
        return self.directory / "ccache"

    @property
    def env(self) -> dict[str, str]:
        """What a client (kinit, curl) needs; the KDC's own settings are added by ``kdc_env``."""
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5CCNAME": f"FILE:{self.ccache}"}

    def kdc_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "KRB5_KDC_PROFILE": str(self.directory / "kdc.conf")}

    def start(self) -> Realm:
        missing = missing_tools()
        if missing:
            raise RealmError(f"{', '.join(missing)} not found: install the Debian packages {DEBIAN_PACKAGES}")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clear()
        self.port = self.port or free_port()
        self.write_configs()
        master = ["-P", "master-key-of-a-throwaway-realm"]  # protects nothing: the stash is beside it
        self.run("kdb5_util", ["-r", self.realm, "create", "-s", "-W", *master], stdin="")
        self.add_principals({self.service: SERVICE_PASSWORD, **self.users})
        self.run("kadmin.local", ["-r", self.realm], stdin=f"ktadd -norandkey -k {self.keytab} {self.service}\n")
        log = (self.directory / "krb5kdc.out").open("wb")
        self.process = subprocess.Popen(
            [find_tool("krb5kdc") or "krb5kdc", "-n", "-r", self.realm, "-P", str(self.directory / "kdc.pid")],
            env=self.kdc_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us; we stop the KDC ourselves
        )
        log.close()
        try:
            self.wait_listening()
            self.write_env_file()
        except BaseException:  # Ctrl-C (the KDC is in its own session: it never sees it) or an error
            self.stop()
            raise
        return self

    def clear(self) -> None:
        """Remove what an earlier realm left in the directory (only the files made here): start afresh."""
        for path in self.directory.iterdir():
            if path.name in FILES or path.name.startswith("principal"):
                path.unlink()

    def add_principals(self, principals: Mapping[str, str]) -> None:
        """``addprinc`` on kadmin.local's stdin, which then prompts for the password twice, also on stdin:
        no password is ever on a command line, and no quoting rule of kadmin's parser applies to it."""
        lines = []
        for name, password in principals.items():
            if not name or any(ch.isspace() or ch in '"\\' for ch in name) or any(ch in "\r\n" for ch in password):
                raise RealmError(f"cannot make a principal of {name!r}: blanks, quotes or line breaks")
            lines.append(f"addprinc {name}\n{password}\n{password}\n")
        out = self.run("kadmin.local", ["-r", self.realm], stdin="".join(lines))
        for name in principals:
            if f'Principal "{name}@{self.realm}" created.' not in out:
                raise RealmError(f"kadmin.local did not create the principal {name}@{self.realm}")

    def run(self, tool: str, args: list[str], stdin: str) -> str:
        """Run one admin tool on the realm's files; its standard output (prompts, never a password)."""
        command = [find_tool(tool) or tool, *args]
        done = subprocess.run(
            command, input=stdin.encode(), env=self.kdc_env(), capture_output=True, timeout=60, check=False
        )
        errors = [line for line in done.stderr.decode(errors="replace").splitlines() if "rror" in line]
        if done.returncode != 0 or errors:
            raise RealmError(f"{tool} failed ({done.returncode}): {' / '.join(errors)[:300] or 'no message'}")
        return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")

    def wait_listening(self, timeout: float = 20.0) -> None:
        assert self.process is not None
        try:
            wait_for_port(self.port, self.process, timeout)
        except (RuntimeError, TimeoutError) as e:
            out = (self.directory / "krb5kdc.out").read_text(errors="replace")[-300:]
            self.stop()
            raise RealmError(f"krb5kdc did not start: {e}: {out}") from None

    def write_configs(self) -> None:
        d = self.directory
        self.krb5_conf.write_text(
            f"""[libdefaults]
    default_realm = {self.realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    clockskew = {self.clockskew}
    udp_preference_limit = 1

[realms]
    {self.realm} = {{
        kdc = 127.0.0.1:{self.port}
    }}

[domain_realm]
    localhost = {self.realm}
    127.0.0.1 = {self.realm}
"""
        )
        (d / "kdc.conf").write_text(
            f"""[kdcdefaults]
    kdc_listen = 127.0.0.1:{self.port}
    kdc_tcp_listen = 127.0.0.1:{self.port}

[realms]
    {self.realm} = {{
        database_name = {d / "principal"}
        key_stash_file = {d / "stash"}
        acl_file = {d / "kadm5.acl"}
        supported_enctypes = {ENCTYPES}
        max_life = 10h
        max_renewable_life = 1d
    }}

[logging]
    kdc = FILE:{d / "kdc.log"}
"""
        )
        (d / "kadm5.acl").write_text("")

    def write_env_file(self) -> None:
        lines = [f"export {k}={v}" for k, v in self.env.items()]
        (self.directory / "env").write_text("\n".join(lines) + "\n")

    def kinit(self, user: str, password: str, extra: Iterable[str] = ()) -> subprocess.CompletedProcess[bytes]:
        """A ticket for ``user`` in the realm's ccache (the password on kinit's stdin)."""
        return subprocess.run(
            [find_tool("kinit") or "kinit", *extra, f"{user}@{self.realm}"],
            input=f"{password}\n".encode(),
            env={**os.environ, **self.env},
            capture_output=True,
            timeout=30,
            check=False,
        )

    def stop(self) -> None:
        """SIGINT the KDC's process group, then SIGKILL after a grace period."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, grace=5)

    def __enter__(self) -> Realm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

