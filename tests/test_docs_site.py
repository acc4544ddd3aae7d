"""End to end: the docs site is built with ``mkdocs --strict`` and checked in headless Chromium.

Every page renders (an article with a title and real text, not the 404 page),
every link in the rendered pages (navigation included) resolves to a built
file and anchor, the offline search index exists and knows a word, and the
search box, driven through ``?q=`` from ``file://``, lists the page that has it.
``MITM407_DOCS_SCREENSHOTS=DIR`` keeps screenshots of the home page and the
quickstart (``make docs-screenshots`` writes them into docs/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from procs import CHROMIUM, chromium

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)"),
]

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = {"screenshot-index.png": "index.html", "screenshot-quickstart.png": "quickstart.html"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


class Page(HTMLParser):
    """What the checks need from a rendered DOM: links, ids, the article's text, search results."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.article: list[str] = []
        self.results: list[str] = []
        self.h1 = 0
        self._depth = 0  # > 0 inside <article>
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
            if "md-search-result__link" in (a.get("class") or ""):
                self.results.append(a["href"] or "")
        if tag == "article":
            self._depth += 1
        elif self._depth and tag == "h1":
            self.h1 += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "article" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.article.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.article).split())


def pages(site: Path) -> list[Path]:
    """Every page mkdocs made (not the 404 page, not docs/compat.html, which is copied as is)."""
    return sorted(p for p in site.rglob("*.html") if p.name not in ("404.html", "compat.html"))


@pytest.fixture(scope="module")
def rendered(site: Path, tmp_path_factory) -> dict[Path, Page]:
    tmp = tmp_path_factory.mktemp("chromium")
    return {page: Page(chromium("--dump-dom", page.as_uri(), tmp=tmp)) for page in pages(site)}


def test_every_nav_entry_was_built(site: Path):
    import yaml

    def files(nav) -> list[str]:
        out = []
        for entry in nav:
            if isinstance(entry, str):  # a bare page: mkdocs takes its title from the page's heading
                out.append(entry)
                continue
            for value in entry.values():
                out += files(value) if isinstance(value, list) else [value]
        return out

    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8").replace("!!python", "#"))
    built = [site / name.replace(".md", ".html") for name in files(config["nav"])]
    assert built and all(path.exists() for path in built)
    assert set(built) == set(pages(site)), "a page is built but not in the nav, or the reverse"


def test_every_page_renders(rendered: dict[Path, Page]):
    assert len(rendered) >= 15
    for path, page in rendered.items():
        assert page.h1 == 1, f"{path.name}: {page.h1} titles"
        assert len(page.text) > 300, f"{path.name}: almost empty ({page.text[:100]!r})"
        assert "404 - Not found" not in page.text


def test_every_link_resolves(site: Path, rendered: dict[Path, Page]):
    ids = {path.resolve(): page.ids for path, page in rendered.items()}
    broken = []
    for path, page in rendered.items():
        for href in page.links:
            url = urlsplit(href)
            if url.scheme in ("http", "https", "mailto") or href.startswith("javascript:"):
                continue
            target = (path.parent / unquote(url.path)).resolve() if url.path else path.resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists() or site.resolve() not in target.parents:
                broken.append(f"{path.name}: {href}")
            elif url.fragment and target in ids and url.fragment not in ids[target]:
                broken.append(f"{path.name}: {href} (no such anchor)")
    assert not broken


def test_the_site_fetches_nothing_from_the_network(site: Path):
    for path in [*pages(site), site / "404.html"]:
        text = path.read_text(encoding="utf-8")
        for attr in ('src="http', "href=\"http"):
            for chunk in text.split(attr)[1:]:
                assert not chunk.startswith(("s://fonts", "s://unpkg", "s://cdn")), f"{path.name}: {chunk[:60]}"
        assert "fonts.googleapis" not in text and "unpkg.com" not in text, path.name


def test_search_index_knows_the_pages(site: Path):
    index = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    locations = {doc["location"].split("#")[0] for doc in index["docs"]}
    assert {"quickstart.html", "troubleshooting.html", "reference/scenario.html"} <= locations
    hits = {doc["location"].split("#")[0] for doc in index["docs"] if "ssl_insecure" in doc["text"]}
    assert "troubleshooting.html" in hits
    assert (site / "search" / "search_index.js").read_text(encoding="utf-8").startswith("var __index =")


def test_search_box_finds_a_word_offline(site: Path, tmp_path: Path):
    """Material opens the search with ``?q=``; from file:// it runs on the inlined index (offline plugin)."""
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", f"{(site / 'index.html').as_uri()}?q=attribution",
                   tmp=tmp_path)
    results = Page(dom).results
    assert any(urlsplit(href).path == (site / "hoplog.html").as_posix() for href in results), results


def test_screenshots(site: Path, tmp_path: Path):
    keep = os.environ.get("MITM407_DOCS_SCREENSHOTS")
    for name, page in SCREENSHOTS.items():
        shot = (Path(keep) if keep else tmp_path) / name
        chromium(f"--screenshot={shot.resolve()}", "--window-size=1280,900", "--hide-scrollbars",
                 (site / page).as_uri(), tmp=tmp_path)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000, "a nearly blank screenshot"
