"""Every recipe in docs/recipes/ runs: its proxy command, its client commands, its expected lines.

The page is the test's input (see tests/recipes.py for the format), so a recipe
whose client no longer prints what the page says fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from mitm407.teach.lab import clean_env
from procs import MITMDUMP, REPO, Origin, free_port, make_tls_context, stop_process, wait_for_port
from recipes import (
    RECIPES_DIR,
    Places,
    Recipe,
    RecipeError,
    all_recipes,
    localize,
    missing_lines,
    parse_recipe,
    proxy_command,
)

PAGES = all_recipes()
MIN_RECIPES = 20


# -- the pages themselves (no processes) -------------------------------------------


def test_at_least_twenty_recipes_each_listed_in_the_index():
    assert len(PAGES) >= MIN_RECIPES
    index = (RECIPES_DIR / "index.md").read_text(encoding="utf-8")
    for page in PAGES:
        assert f"]({page.name})" in index, f"{page.name} is not listed in docs/recipes/index.md"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_is_a_complete_recipe(page: Path):
    recipe = parse_recipe(page)  # raises RecipeError with what is missing
    assert recipe.proxy.startswith(("mitmdump ", "mitm407 run "))
    assert "8080" in recipe.proxy


def test_a_page_without_expected_output_is_refused(tmp_path: Path):
    page = tmp_path / "broken.md"
    page.write_text('# t\n<!-- recipe: -->\n```bash title="proxy"\nmitmdump -p 8080\n```\n'
                    '```bash title="client"\ncurl x\n```\n**Upstream:** x\n', encoding="utf-8")
    with pytest.raises(RecipeError, match="expected block"):
        parse_recipe(page)


def test_localize_swaps_the_readers_places_for_the_tests():
    places = Places(41234, "http://127.0.0.1:5001", "https://127.0.0.1:5002", Path("/tmp/conf"))
    text = "curl --cacert ~/.mitmproxy/ca.pem -x http://u:p@127.0.0.1:8080 https://example.com/ http://httpbin.org/get"
    assert localize(text, places) == (
        "curl --cacert /tmp/conf/ca.pem -x http://u:p@127.0.0.1:41234 https://127.0.0.1:5002/ "
        "http://127.0.0.1:5001/get")


# -- running them --------------------------------------------------------------------


def httpbin_routes(origin: Origin) -> None:
    """The two httpbin.org endpoints the recipes use: /headers and /redirect-to."""

    def headers(handler, body):
        payload = json.dumps({"headers": dict(handler.headers.items())}, indent=2).encode()
        return 200, {"Content-Type": "application/json"}, payload

    def redirect_to(handler, body):
        target = parse_qs(urlsplit(handler.path).query).get("url", ["/"])[0]
        return 302, {"Location": target}, b""

    origin.routes["/headers"] = headers
    origin.routes["/redirect-to"] = redirect_to


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Origin, Origin]]:
    plain, tls = Origin(), Origin(make_tls_context(tmp_path_factory.mktemp("recipe-origin")))
    for origin in (plain, tls):
        httpbin_routes(origin)
    yield plain, tls
    plain.close()
    tls.close()


def client_env(workdir: Path) -> dict[str, str]:
    """No proxy variables from the outside; this venv's python and pip first on PATH; a private HOME."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return clean_env({"PATH": path, "HOME": str(workdir), "PYTHONPATH": str(REPO / "addons"),
                      "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "GIT_TERMINAL_PROMPT": "0"})


def run_proxy(recipe: Recipe, places: Places, logdir: Path) -> subprocess.Popen:
    argv = proxy_command(recipe.proxy, places, MITMDUMP, sys.executable)
    log = open(logdir / f"recipe-{recipe.name}-{places.proxy_port}.log", "wb")  # noqa: SIM115 (lives with the process)
    env = clean_env({"PYTHONPATH": str(REPO / "addons")})
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO, env=env,
                            start_new_session=True)
    log.close()
    return proc


@pytest.mark.e2e
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_recipe_runs_as_written(page: Path, origins: tuple[Origin, Origin], confdir: Path, logdir: Path,
                                tmp_path: Path):

    recipe = parse_recipe(page)
    missing = [tool for tool in recipe.needs if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"client not installed: {', '.join(missing)}")
    plain, tls = origins
    places = Places(free_port(), plain.url("").rstrip("/"), tls.url("").rstrip("/"), confdir)
    (tmp_path / ".mitmproxy").symlink_to(confdir)  # the client's ~/.mitmproxy is the proxy's confdir
    proxy = run_proxy(recipe, places, logdir)
    try:
        wait_for_port(places.proxy_port, proxy)
        for number, step in enumerate(recipe.steps, 1):
            script = localize(step.script, places)
            started = time.monotonic()
            done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                                  env=client_env(tmp_path), timeout=recipe.timeout, stdin=subprocess.DEVNULL)
            output = done.stdout + done.stderr
            if os.environ.get("RECIPE_SHOW"):
                print(f"--- {recipe.name} step {number} ({time.monotonic() - started:.1f}s)\n$ {script}\n{output}")
            lost = missing_lines(tuple(localize(line, places) for line in step.expected), output)
            assert not lost, f"{page.name} step {number}: missing {lost}\n--- script\n{script}\n--- output\n{output}"
    finally:
        stop_process(proxy)
