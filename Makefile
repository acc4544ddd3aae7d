# mitm407: `make demo` runs the proxy, `make test` runs every test, `make unit` the in-process ones (fast),
# `make lint` ruff and the import contracts (docs/development.md).
# PYTHON/VENV select the interpreter: .ci/run uses them for mitmproxy 11 and 12.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Kerberos: the KDC and kinit for tests and demo-kerberos; libkrb5-dev to build python-gssapi; faketime: clock skew test
# (defined before its use: := expands at once)
DEBIAN_KERBEROS_PACKAGES := krb5-kdc krb5-admin-server krb5-user libkrb5-dev faketime
DEBIAN_TEST_PACKAGES := curl squid apache2-utils openssl gss-ntlmssp chromium $(DEBIAN_KERBEROS_PACKAGES)
# python-gssapi has no Linux wheel: pip compiles it (gcc, krb5-config, and Python.h: python3-dev when missing)
GSSAPI_BUILD_PACKAGES = gcc libkrb5-dev $(shell $(PYTHON) -c 'import os, sysconfig; \
	print("" if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else "python3-dev")')
KRB_DIR ?= /tmp/mitm407-kerberos
ARGS ?=

.PHONY: demo demo-kerberos test unit lint lint-imports check-scenarios clean matrix teach report-screenshot bench bench-memory fuzz soak

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	tools/ensure-debian-packages $(GSSAPI_BUILD_PACKAGES)
	$(BIN)/python -m pip install -q -e '.[test,kerberos]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/mitmdump --listen-host 127.0.0.1 -s addons/proxyauth.py $(ARGS)

# Negotiate/Kerberos: a throwaway KDC (realm CORP.TEST, files in KRB_DIR) and the proxy on 127.0.0.1:8080
# with the shipped negotiate-kerberos scenario; follow the printed lines; Ctrl-C stops both.
demo-kerberos: $(VENV)/.installed-test
	tools/ensure-debian-packages $(DEBIAN_KERBEROS_PACKAGES)
	$(BIN)/python -m mitm407 kdc --scenario negotiate-kerberos --dir $(KRB_DIR) & kdc=$$!; \
		trap 'kill -INT $$kdc 2>/dev/null; wait $$kdc' EXIT INT TERM; sleep 2; \
		$(BIN)/mitmdump --listen-host 127.0.0.1 -p 8080 -s addons/proxyauth.py --set scenario=negotiate-kerberos $(ARGS)

# Real clients (curl, Python libraries, git, pip, node, java) through the proxy; regenerates docs/compat.*
# undici (Node's proxy agent) comes from npm into the venv; without npm its row reads "not installed".
matrix: $(VENV)/.installed-test
	@[ -f $(VENV)/node/node_modules/undici/package.json ] || ! command -v npm >/dev/null || \
		npm install --prefix $(VENV)/node --no-save --no-audit --no-fund --loglevel=error undici@6 || \
		echo "npm install undici failed: its matrix row will read 'not installed'"
	$(BIN)/python -m mitm407 matrix -o docs/compat.md --html docs/compat.html $(ARGS)

# The 401-vs-407 walk-through in the terminal (ARGS=--step to wait for Enter between steps)
teach: $(VENV)/.installed
	$(BIN)/python -m mitm407 demo 401-vs-407 $(ARGS)

# docs/report-screenshot.png: a hop log from real proxies and curl, `report --html`, headless Chromium
report-screenshot: $(VENV)/.installed-test
	tools/ensure-debian-packages curl chromium
	MITM407_SCREENSHOT=docs/report-screenshot.png $(BIN)/python -m pytest -q tests/test_e2e_report.py -k chromium

test: $(VENV)/.installed-test
	tools/ensure-debian-packages $(DEBIAN_TEST_PACKAGES)
	@$(BIN)/python -c "import sys, mitmproxy.version as v; print('testing with Python', sys.version.split()[0], 'mitmproxy', v.VERSION)"
	$(BIN)/ruff check addons tests bench
	$(MAKE) --no-print-directory lint-imports
	$(BIN)/python -m mitm407 check scenarios/*.yaml
	$(BIN)/python -m pytest -q

# The in-process tests only (no mitmdump, curl or Squid): a quick loop while editing.
unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m "not e2e" $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check addons tests bench
	$(MAKE) --no-print-directory lint-imports

# The import contracts in pyproject.toml [tool.importlinter], checked on this checkout's addons/.
lint-imports: $(VENV)/.installed-test
	PYTHONPATH=addons $(BIN)/lint-imports --no-cache

# Not part of `make test`: they load the machine (see README "Performance").
# bench: BENCH_DURATION (s per measurement), BENCH_ROUNDS, BENCH_CONNECTIONS, BENCH_ONLY (config keys)
bench: $(VENV)/.installed-test
	tools/ensure-debian-packages nginx-light wrk
	cd bench && $(abspath $(BIN))/python run.py

# bench-memory: MEMORY_ENTRIES (default 1000000), MEMORY_USERS (default 100000)
bench-memory: $(VENV)/.installed-test
	cd bench && $(abspath $(BIN))/python memory.py

FUZZ_EXAMPLES ?= 20000
fuzz: $(VENV)/.installed-test
	HYPOTHESIS_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_properties.py

# soak: SOAK_S (default 60), SOAK_CLIENTS (per proxy, default 4)
soak: $(VENV)/.installed-test
	tools/ensure-debian-packages $(DEBIAN_TEST_PACKAGES)
	cd bench && $(abspath $(BIN))/python soak.py

clean:
	rm -rf .venv .venv-* .pytest_cache build *.egg-info

# The docs site: tools/gendocs.py regenerates the reference pages, mkdocs builds docs/ into site/
# (--strict: a broken link or a missing page fails). docs-serve: http://127.0.0.1:8000 with live reload.
.PHONY: docs docs-serve
docs: $(VENV)/.installed-test
	$(BIN)/python tools/gendocs.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(VENV)/.installed-test
	$(BIN)/python tools/gendocs.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# docs/screenshot-*.png: the built site in headless Chromium (tests/test_docs_site.py)
.PHONY: docs-screenshots
docs-screenshots: $(VENV)/.installed-test
	tools/ensure-debian-packages chromium
	MITM407_DOCS_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/test_docs_site.py -k screenshots
