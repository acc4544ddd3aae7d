"""Users and their secrets: inline, ``env:VAR``, ``file:PATH`` and htpasswd files.

Secrets live only in the frozen ``Secret`` objects below, whose ``repr`` hides
them, so a stray log of a scenario object cannot leak a password or hash.
Slow hashes (bcrypt) are checked here but cached by the schemes, never per
request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mitm407.core.files import KIB, UnreadableFile, read_regular_file, shown
from mitm407.core.problems import Problems

MAX_SECRET_BYTES = 64 * KIB  # a ``file:`` password: far above any password, far below "read /dev/zero"

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def apr1_crypt(password: bytes, salt: bytes) -> str:
    """Apache's ``$apr1$`` MD5-crypt (htpasswd's default), as in apr_md5.c.

    Implemented here (a few lines, tested against ``openssl passwd -apr1``)
    rather than through passlib, which is unmaintained.
    """
    salt = salt[:8]
    magic = b"$apr1$"
    ctx = password + magic + salt
    final = hashlib.md5(password + salt + password).digest()
    for left in range(len(password), 0, -16):
        ctx += final[: min(16, left)]
    i = len(password)
    while i:
        ctx += b"\x00" if i & 1 else password[:1]
        i >>= 1
    final = hashlib.md5(ctx).digest()
    for i in range(1000):
        step = password if i & 1 else final
        if i % 3:
            step += salt
        if i % 7:
            step += password
        step += final if i & 1 else password
        final = hashlib.md5(step).digest()

    def to64(value: int, n: int) -> str:
        out = ""
        for _ in range(n):
            out += _ITOA64[value & 0x3F]
            value >>= 6
        return out

    encoded = "".join(
        to64((final[a] << 16) | (final[b] << 8) | final[c], 4)
        for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    )
    encoded += to64(final[11], 2)
    return f"$apr1${salt.decode('ascii', 'replace')}${encoded}"


@dataclass(frozen=True)
class Secret:
    """A user's password as the scenario gives it: cleartext or a hash.

    ``cleartext`` is known for inline/env/file passwords (Digest and NTLM need
    it); htpasswd entries only carry a hash and so work with Basic alone.
    """

    kind: str  # "cleartext" | "bcrypt" | "apr1" | "sha1" | "htdigest"
    value: str = field(repr=False)  # htdigest: the whole "user:realm:HA1" line

    @property
    def slow(self) -> bool:
        """True when verifying costs real CPU (bcrypt): the result must be cached."""
        return self.kind == "bcrypt"

    @property
    def cleartext(self) -> str | None:
        return self.value if self.kind == "cleartext" else None

    @property
    def htdigest_ha1(self) -> str | None:
        """The MD5 HA1 of an htdigest entry (lower-case hex): all Digest needs."""
        return self.value.rpartition(":")[2] if self.kind == "htdigest" else None

    def verify(self, password: str) -> bool:
        """Constant-time check of ``password`` against this secret."""
        given = password.encode("utf-8", "surrogateescape")
        if self.kind == "cleartext":
            return hmac.compare_digest(given, self.value.encode("utf-8"))
        if self.kind == "sha1":
            digest = base64.b64encode(hashlib.sha1(given).digest()).decode()
            return hmac.compare_digest(digest, self.value[len("{SHA}") :])
        if self.kind == "apr1":
            salt = self.value.split("$")[2].encode()
            return hmac.compare_digest(apr1_crypt(given, salt), self.value)
        if self.kind == "bcrypt":
            import bcrypt

            stored = self.value.encode()
            if stored.startswith(b"$2y$"):  # PHP/Apache spelling of the same algorithm
                stored = b"$2b$" + stored[4:]
            try:
                return bcrypt.checkpw(given[:72], stored)
            except ValueError:
                return False
        if self.kind == "htdigest":  # HA1 = MD5(user ":" realm ":" password)
            user, _, rest = self.value.partition(":")
            realm, _, ha1 = rest.rpartition(":")
            computed = hashlib.md5(f"{user}:{realm}:".encode() + given).hexdigest()
            return hmac.compare_digest(computed, ha1)
        return False


@dataclass(frozen=True)
class User:
    """A user of a scenario; ``source`` says where it was defined (no secret)."""

    name: str
    secret: Secret
    source: str
    domain: str = ""  # NTLM domain, when a scenario binds one


def classify_hash(value: str) -> Secret | None:
    """Recognise an htpasswd hash; None when the format is not supported."""
    if value.startswith(("$2y$", "$2b$", "$2a$")) and len(value) == 60:
        return Secret("bcrypt", value)
    if value.startswith("$apr1$") and value.count("$") == 3:
        return Secret("apr1", value)
    if value.startswith("{SHA}") and len(value) == 33:
        return Secret("sha1", value)
    return None


def parse_htpasswd(text: str, file: str, problems: Problems) -> list[User]:
    """Parse an Apache htpasswd file; every bad line is a located problem."""
    users: list[User] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if not sep or not name:
            problems.add(file, number, 1, "htpasswd line must be 'user:hash'")
            continue
        secret = classify_hash(value.strip())
        if secret is None:
            problems.add(
                file,
                number,
                len(name) + 2,
                f"unsupported password hash for user '{name}'",
                "use bcrypt (htpasswd -B), $apr1$ MD5 (htpasswd -m) or {SHA} (htpasswd -s); "
                "DES crypt and plain text are not accepted",
            )
            continue
        users.append(User(name, secret, f"{file}:{number}"))
    return users


def parse_htdigest(text: str, file: str, realm: str, problems: Problems) -> list[User]:
    """Parse an Apache htdigest file (``user:realm:MD5-HA1``); bad lines are located problems.

    The realm is part of HA1, so a line for another realm can never verify:
    it is an error, not a silent miss.
    """
    users: list[User] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        line_realm, sep2, ha1 = rest.rpartition(":")
        if not sep or not sep2 or not name:
            problems.add(file, number, 1, "htdigest line must be 'user:realm:HA1'")
            continue
        ha1_col = len(name) + len(line_realm) + 3
        if line_realm != realm:
            problems.add(
                file,
                number,
                len(name) + 2,
                f"realm '{line_realm}' of user '{name}' is not the scenario's realm '{realm}'",
                "HA1 includes the realm: regenerate with htdigest FILE REALM USER, or change 'realm:'",
            )
            continue
        ha1 = ha1.strip()
        if len(ha1) != 32 or any(ch not in "0123456789abcdefABCDEF" for ch in ha1):
            problems.add(file, number, ha1_col, f"HA1 of user '{name}' must be 32 hex digits (MD5)")
            continue
        users.append(User(name, Secret("htdigest", f"{name}:{line_realm}:{ha1.lower()}"), f"{file}:{number}"))
    return users


def resolve_password(spec: str, base: Path, env: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """Turn ``env:VAR``, ``file:PATH`` or a literal into a password.

    Returns (password, error); exactly one is meaningful. A file's trailing
    newline is dropped, because editors add one.
    """
    env = os.environ if env is None else env
    if spec.startswith("env:"):
        var = spec[4:]
        if not var:
            return None, "'env:' needs a variable name, e.g. env:PROXY_PASSWORD"
        if var not in env:
            return None, f"environment variable {var} is not set"
        return env[var], ""
    if spec.startswith("file:"):
        path = base / spec[5:]
        try:
            return read_regular_file(path, MAX_SECRET_BYTES).rstrip("\r\n"), ""
        except UnreadableFile as e:  # a FIFO or /dev/zero is refused, never waited on or read forever
            return None, f"cannot read password file {shown(path)}: {e.reason}"
    return spec, ""


# The Python package each secret kind needs to be verified (import name; its pip name is the same).
SECRET_PACKAGES = {"bcrypt": "bcrypt"}


def missing_package(secret: Secret) -> str | None:
    """The package that ``secret.verify`` would import and that cannot be imported here, if any.

    Checked at load: a hash nobody can verify must stop ``check``, start-up
    and reload with a located error, not fail at the first login (where an
    exception on the decision path could let a request through).
    """
    package = SECRET_PACKAGES.get(secret.kind)
    if package is None:
        return None
    try:
        importlib.import_module(package)
    except ImportError:
        return package
    return None
