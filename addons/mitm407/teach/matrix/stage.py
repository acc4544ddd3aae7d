"""What the matrix's clients fetch: one directory served over HTTP and HTTPS.

The directory holds a page (``/hello.txt``), a dumb-HTTP git repository
(``/repo.git``, made with ``git update-server-info``) and a PEP 503 simple
index (``/simple/mitm407-probe/``) with a wheel built here, so curl, the
Python libraries, git and pip each fetch something real. Both servers bind
127.0.0.1 on a free port and stop with the stage.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import shutil
import subprocess
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mitm407.teach.lab import clean_env, make_tls_context

HELLO = "hello from the mitm407 matrix origin\n"
PROBE_NAME, PROBE_VERSION = "mitm407-probe", "1.0"


class _QuietHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass


class StaticServer:
    """A threaded static file server on 127.0.0.1 (TLS when given a context)."""

    def __init__(self, root: Path, tls=None) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.scheme = "https" if tls is not None else "http"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def build_wheel(directory: Path) -> Path:
    """A minimal valid pure-Python wheel (one module, dist-info, RECORD)."""
    dist = f"{PROBE_NAME.replace('-', '_')}-{PROBE_VERSION}"
    files = {
        "mitm407_probe.py": "VALUE = 407\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {PROBE_NAME}\nVersion: {PROBE_VERSION}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: mitm407\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return wheel


def build_simple_index(root: Path) -> None:
    project = root / "simple" / PROBE_NAME
    project.mkdir(parents=True)
    wheel = build_wheel(project)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (root / "simple" / "index.html").write_text(f'<a href="{PROBE_NAME}/">{PROBE_NAME}</a>\n')
    (project / "index.html").write_text(f'<a href="{wheel.name}#sha256={sha}">{wheel.name}</a>\n')


def build_git_repo(root: Path) -> bool:
    """A bare repository with one commit, ready for dumb HTTP; False without git."""
    git = shutil.which("git")
    if git is None:
        return False
    work, bare = root.parent / "git-work", root / "repo.git"
    env = clean_env({"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root.parent), "GIT_AUTHOR_NAME": "mitm407",
                     "GIT_AUTHOR_EMAIL": "matrix@mitm407.invalid", "GIT_COMMITTER_NAME": "mitm407",
                     "GIT_COMMITTER_EMAIL": "matrix@mitm407.invalid"})

    def git_run(*args: str, cwd: Path) -> None:
        subprocess.run([git, *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=30)

    work.mkdir()
    git_run("init", "-q", "-b", "main", cwd=work)
    (work / "README").write_text("cloned through mitm407\n")
    git_run("add", "README", cwd=work)
    git_run("commit", "-q", "-m", "matrix probe", cwd=work)
    git_run("clone", "-q", "--bare", str(work), str(bare), cwd=root)
    git_run("update-server-info", cwd=bare)
    return True


class Stage:
    """The origin content plus its HTTP and HTTPS servers."""

    def __init__(self, workdir: Path) -> None:
        self.root = workdir / "www"
        self.root.mkdir(parents=True)
        (self.root / "hello.txt").write_text(HELLO)
        build_simple_index(self.root)
        self.has_git_repo = build_git_repo(self.root)
        tls_dir = workdir / "tls"
        tls_dir.mkdir()
        self.http = StaticServer(self.root)
        self.https = StaticServer(self.root, make_tls_context(tls_dir))
        # self-signed for 127.0.0.1: also a CA file that does NOT sign the proxy's certificate (the TLS-to-the-proxy
        # column gives it to a client that passed, to see whether it verified the proxy at all)
        self.origin_cert = str(tls_dir / "origin.crt")

    def url(self, path: str, https: bool) -> str:
        return (self.https if https else self.http).url(path)

    def close(self) -> None:
        for server in (self.http, self.https):
            with contextlib.suppress(Exception):
                server.close()
