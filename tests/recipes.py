"""Read the recipe pages in docs/recipes/ and run them against real processes.

A recipe page is markdown a reader can follow by hand; the test reads the same
blocks, so the page cannot drift from what the client really prints:

    <!-- recipe: needs=curl,java timeout=40 -->      marks the page; what it needs
    ```bash title="proxy"                            one line: mitmdump ... or mitm407 run ...
    ```bash title="client"                           a bash script, run as written
    ```text title="expected"                         lines that must appear in the
                                                     output of the client block before it

A page may hold several client/expected pairs; they run in order against one
proxy. What the reader has and the test has not is substituted before running:
port 8080 becomes a free port, example.com and httpbin.org (plain and TLS)
become local origins, ``~/.mitmproxy`` becomes the test's confdir.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent.parent / "docs" / "recipes"
MARKER = re.compile(r"<!--\s*recipe:(.*?)-->", re.S)
FENCE = re.compile(r'^```(\w+)\s+title="(proxy|client|expected)"\s*\n(.*?)^```\s*$', re.M | re.S)
UPSTREAM = re.compile(r"^\*\*Upstream:\*\*\s+\S", re.M)


@dataclass(frozen=True)
class Step:
    """One client block and the lines its output must contain."""

    script: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    path: Path
    title: str
    proxy: str
    steps: tuple[Step, ...]
    needs: tuple[str, ...] = ("curl",)
    timeout: float = 30.0
    options: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem


class RecipeError(ValueError):
    pass


def parse_marker(text: str) -> dict[str, str]:
    """``key=value key2="a b"`` from the page's ``<!-- recipe: ... -->`` comment."""
    match = MARKER.search(text)
    if not match:
        raise RecipeError("no <!-- recipe: ... --> marker")
    out = {}
    for item in shlex.split(match.group(1)):
        key, sep, value = item.partition("=")
        if not sep:
            raise RecipeError(f"marker item {item!r} is not key=value")
        out[key] = value
    return out


def parse_recipe(path: Path) -> Recipe:
    text = path.read_text(encoding="utf-8")
    options = parse_marker(text)
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), "")
    proxy = ""
    steps: list[Step] = []
    pending: str | None = None
    for _lang, kind, body in FENCE.findall(text):
        if kind == "proxy":
            if proxy:
                raise RecipeError("more than one proxy block")
            proxy = " ".join(line.rstrip("\\").strip() for line in body.strip().splitlines())
        elif kind == "client":
            if pending is not None:
                steps.append(Step(pending, ()))
            pending = body
        else:
            if pending is None:
                raise RecipeError("an expected block without a client block before it")
            lines = tuple(line.strip() for line in body.splitlines() if line.strip())
            steps.append(Step(pending, lines))
            pending = None
    if pending is not None:
        steps.append(Step(pending, ()))
    if not title or not proxy or not any(step.expected for step in steps):
        raise RecipeError("a recipe needs a '# title', a proxy block and a client block with an expected block")
    if not UPSTREAM.search(text):
        raise RecipeError("no '**Upstream:** <link>' line")
    needs = tuple(n for n in options.get("needs", "curl").split(",") if n)
    return Recipe(path, title, proxy, tuple(steps), needs, float(options.get("timeout", 30)), options)


def all_recipes() -> list[Path]:
    return sorted(p for p in RECIPES_DIR.glob("*.md") if p.name != "index.md")


@dataclass(frozen=True)
class Places:
    """Where the test's processes listen, to put in place of the reader's."""

    proxy_port: int
    http_origin: str  # http://127.0.0.1:PORT
    https_origin: str  # https://127.0.0.1:PORT
    confdir: Path


def localize(text: str, places: Places) -> str:
    """The reader's ports, hosts and confdir replaced by the test's."""
    text = re.sub(r"\b8080\b", str(places.proxy_port), text)
    for host in ("example.com", "httpbin.org"):
        text = text.replace(f"https://{host}", places.https_origin).replace(f"http://{host}", places.http_origin)
    return text.replace("~/.mitmproxy", str(places.confdir))


def proxy_command(line: str, places: Places, mitmdump: str, python: str) -> list[str]:
    """The page's proxy line as an argv, with the test's confdir and trust in the self-signed local origin."""
    argv = shlex.split(localize(line, places))
    if argv[:1] == ["mitmdump"]:
        argv[0] = mitmdump
    elif argv[:2] == ["mitm407", "run"]:
        argv[:1] = [python, "-m", "mitm407"]
    else:
        raise RecipeError(f"the proxy block must start with 'mitmdump' or 'mitm407 run': {line!r}")
    argv += ["--set", f"confdir={places.confdir}", "--listen-host", "127.0.0.1"]
    if not any(a.startswith("ssl_insecure") for a in argv):
        argv += ["--set", "ssl_insecure=true"]
    return argv


def missing_lines(expected: tuple[str, ...], output: str) -> list[str]:
    """Expected lines not found in the output (each is a substring of some output line)."""
    return [line for line in expected if line not in output]
