# mitm407: `make demo` runs the proxy, `make test` runs every test.
# PYTHON/VENV select the interpreter: .ci/run uses them for mitmproxy 11 and 12.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEBIAN_TEST_PACKAGES := curl squid apache2-utils openssl
ARGS ?=

.PHONY: demo test lint check-scenarios clean bench bench-memory fuzz soak

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/mitmdump -s addons/proxyauth.py $(ARGS)

test: $(VENV)/.installed-test
	tools/ensure-debian-packages $(DEBIAN_TEST_PACKAGES)
	@$(BIN)/python -c "import sys, mitmproxy.version as v; print('testing with Python', sys.version.split()[0], 'mitmproxy', v.VERSION)"
	$(BIN)/ruff check addons tests bench
	$(BIN)/python -m mitm407 check scenarios/*.yaml
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check addons tests bench

# Not part of `make test`: they load the machine (see README "Performance").
# bench: BENCH_DURATION (s per measurement), BENCH_ROUNDS, BENCH_CONNECTIONS, BENCH_ONLY (config keys)
bench: $(VENV)/.installed-test
	tools/ensure-debian-packages nginx-light wrk
	cd bench && ../$(BIN)/python run.py

# bench-memory: MEMORY_ENTRIES (default 1000000), MEMORY_USERS (default 100000)
bench-memory: $(VENV)/.installed-test
	cd bench && ../$(BIN)/python memory.py

FUZZ_EXAMPLES ?= 20000
fuzz: $(VENV)/.installed-test
	HYPOTHESIS_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_properties.py

# soak: SOAK_S (default 60), SOAK_CLIENTS (default 4)
soak: $(VENV)/.installed-test
	tools/ensure-debian-packages $(DEBIAN_TEST_PACKAGES)
	cd bench && ../$(BIN)/python soak.py

clean:
	rm -rf .venv .venv-* .pytest_cache build *.egg-info
