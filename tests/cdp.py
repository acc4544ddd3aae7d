"""A tiny Chrome DevTools Protocol client (stdlib socket + wsproto, which mitmproxy already depends on).

Enough to drive one headless Chromium page in a test: navigate, evaluate
JavaScript, take a screenshot. Playwright is not available here; this is the
protocol it speaks, without the library.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage

from procs import stop_process


class Page:
    """One page target over its DevTools websocket."""

    def __init__(self, port: int, path: str, timeout: float = 20.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=f"127.0.0.1:{port}", target=path)))
        self.next_id = 0
        self.buffer = ""
        self.pending: list[dict] = []
        while not any(isinstance(e, AcceptConnection) for e in self._events()):
            pass

    def _events(self) -> list[Any]:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("DevTools closed the websocket")
        self.ws.receive_data(data)
        return list(self.ws.events())

    def call(self, method: str, **params: Any) -> dict:
        self.next_id += 1
        wanted = self.next_id
        self.sock.sendall(self.ws.send(TextMessage(data=json.dumps({"id": wanted, "method": method,
                                                                    "params": params}))))
        while True:
            for event in self._events():
                if isinstance(event, CloseConnection):
                    raise ConnectionError("DevTools closed the websocket")
                if isinstance(event, Message):
                    self.buffer += event.data
                    if not event.message_finished:
                        continue
                    message, self.buffer = json.loads(self.buffer), ""
                    if message.get("id") == wanted:
                        if "error" in message:
                            raise RuntimeError(f"{method}: {message['error']}")
                        return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll ``expression`` until it is truthy (pages load asynchronously); its last value."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:  # the context went away mid-navigation
                value = None
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def start_chromium(chromium: str, profile: Path, *args: str, timeout: float = 30.0) -> tuple[subprocess.Popen, Page]:
    """Headless Chromium (as root: no sandbox) with DevTools on a free port; its first page."""
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=900,700", *args, "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        return proc, first_page(proc, profile / "DevToolsActivePort", timeout)
    except BaseException:  # whatever failed after the start: no Chromium is left running
        stop(proc)
        raise


def first_page(proc: subprocess.Popen, active: Path, timeout: float) -> Page:
    """The first page of a starting Chromium, once it has written its DevTools port to ``active``."""
    deadline = time.monotonic() + timeout
    while not (active.exists() and len(active.read_text().splitlines()) >= 2):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("Chromium did not open its DevTools port")
        time.sleep(0.1)
    port = int(active.read_text().splitlines()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:  # noqa: S310 (local)
        targets = json.load(r)
    page = next(t for t in targets if t.get("type") == "page")
    path = page["webSocketDebuggerUrl"].split(str(port), 1)[1]
    return Page(port, path)


def stop(proc: subprocess.Popen) -> None:
    """SIGINT then SIGKILL to Chromium's whole process group (its renderers and helpers too)."""
    stop_process(proc)
