"""Password hashes and htpasswd parsing (bcrypt, $apr1$, {SHA})."""

from __future__ import annotations

import shutil
import subprocess
import sys

import bcrypt
import pytest

from mitm407.core.credentials import (
    MAX_SECRET_BYTES,
    Secret,
    apr1_crypt,
    classify_hash,
    missing_package,
    parse_htpasswd,
    resolve_password,
)
from mitm407.core.problems import Problems
from specialfiles import KINDS, special_file


@pytest.mark.e2e  # starts a process
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize("password", ["secret", "", "pässwörd", "x" * 40, "with:colon"])
def test_apr1_matches_openssl(password):
    expected = subprocess.run(
        ["openssl", "passwd", "-apr1", "-salt", "Ab3dEf.h", password], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert apr1_crypt(password.encode(), b"Ab3dEf.h") == expected
    assert Secret("apr1", expected).verify(password)
    assert not Secret("apr1", expected).verify(password + "x")


@pytest.mark.e2e  # starts a process
@pytest.mark.skipif(shutil.which("htpasswd") is None, reason="apache2-utils not installed")
def test_htpasswd_tool_output_verifies(tmp_path):
    path = tmp_path / "h"
    subprocess.run(["htpasswd", "-c", "-b", "-B", "-C", "4", str(path), "b", "pw-b"], check=True, capture_output=True)
    subprocess.run(["htpasswd", "-b", "-m", str(path), "m", "pw-m"], check=True, capture_output=True)
    subprocess.run(["htpasswd", "-b", "-s", str(path), "s", "pw-s"], check=True, capture_output=True)
    problems = Problems()
    users = {u.name: u for u in parse_htpasswd(path.read_text(), str(path), problems)}
    assert not problems.items
    assert [users[n].secret.kind for n in "bms"] == ["bcrypt", "apr1", "sha1"]
    for name in "bms":
        assert users[name].secret.verify(f"pw-{name}")
        assert not users[name].secret.verify("wrong")


def test_bcrypt_2y_prefix_accepted():
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    assert Secret("bcrypt", "$2y$" + hashed[4:]).verify("pw")
    assert not Secret("bcrypt", hashed).verify("nope")


def test_htpasswd_errors_are_located():
    problems = Problems()
    text = "# comment\ngood:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nnocolon\ndes:abJnggxhB/yWI\n"
    users = parse_htpasswd(text, "u.htpasswd", problems)
    assert [u.name for u in users] == ["good"]
    assert [str(p) for p in problems.items] == [
        "u.htpasswd:3:1: htpasswd line must be 'user:hash'",
        "u.htpasswd:4:5: unsupported password hash for user 'des' (use bcrypt (htpasswd -B), $apr1$ MD5 "
        "(htpasswd -m) or {SHA} (htpasswd -s); DES crypt and plain text are not accepted)",
    ]


def test_secret_repr_hides_value():
    secret = Secret("cleartext", "hunter2")
    assert "hunter2" not in repr(secret)
    assert classify_hash("plain") is None


def test_resolve_password_sources(tmp_path):
    (tmp_path / "pw").write_text("from-file\r\n")
    assert resolve_password("env:X", tmp_path, {"X": "v"}) == ("v", "")
    assert resolve_password("env:Y", tmp_path, {})[1] == "environment variable Y is not set"
    assert resolve_password("file:pw", tmp_path, {}) == ("from-file", "")
    assert resolve_password("literal", tmp_path, {}) == ("literal", "")


def test_missing_package_names_bcrypt_only_when_it_cannot_be_imported(monkeypatch):
    hashed = Secret("bcrypt", bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode())
    assert missing_package(hashed) is None and missing_package(Secret("cleartext", "pw")) is None
    monkeypatch.setitem(sys.modules, "bcrypt", None)  # what `import bcrypt` does in an environment without it
    assert missing_package(hashed) == "bcrypt"
    assert missing_package(Secret("apr1", "$apr1$x$y")) is None  # implemented here: nothing to import


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", KINDS)
def test_file_secrets_only_from_regular_files(tmp_path, kind):
    """A FIFO is not waited on, /dev/zero not read for ever."""
    target, reason = special_file(tmp_path, kind)
    assert resolve_password(f"file:{target}", tmp_path, {}) == (
        None, f"cannot read password file {tmp_path / target}: {reason}")


def test_file_secret_at_the_cap_is_read(tmp_path):
    (tmp_path / "secret").write_text("x" * MAX_SECRET_BYTES + "\n")
    assert resolve_password("file:secret", tmp_path, {}) == (None, f"cannot read password file {tmp_path / 'secret'}: "
                                                             f"{MAX_SECRET_BYTES + 1} bytes, larger than the limit of "
                                                             "64 KiB")
    (tmp_path / "secret").write_text("x" * (MAX_SECRET_BYTES - 1) + "\n")
    assert resolve_password("file:secret", tmp_path, {}) == ("x" * (MAX_SECRET_BYTES - 1), "")
