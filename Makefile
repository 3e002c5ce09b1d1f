# imgsearch task runner. `make run` serves the site on embedded services; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_WEIGHTS := ../shared/weights/mobilenet_v2-imagenet1k.pth
# Weights: a torchvision weights name or a .pth path. Offline here, the shared ImageNet file is used.
export IMGSEARCH_WEIGHTS ?= $(if $(wildcard $(SHARED_WEIGHTS)),$(SHARED_WEIGHTS),DEFAULT)
export DEBUG ?= 1

# The browser tests drive Debian's Chromium (never a `playwright install` download); the CJK fonts let
# the Chinese page's screenshots show real characters.
BROWSER_PACKAGES := chromium fonts-noto-cjk

# The accessibility tests load axe-core into the pages: the version pinned in package.json / package-lock.json,
# installed from npm into node_modules/ (npm ci; the tests never fetch it).
AXE := node_modules/axe-core/axe.min.js

.PHONY: install install-run lock browser axe run test lint fuzz index manage load bench bench-large clean-data

# The lock files (pyproject.toml says what is in each): requirements.txt the service alone (the docker image),
# requirements-run.txt that plus the embedded PostgreSQL and Redis, requirements-dev.txt that plus the test, lint
# and benchmark tools. `make lock` writes them again after a change to pyproject.toml.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check

install: $(BIN)/.installed-dev  ## everything: the service, the embedded servers, the test, lint and benchmark tools

install-run: $(BIN)/.installed-run  ## the service and the embedded servers only (what `make run` needs)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/.installed-dev: requirements-dev.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@ $(BIN)/.installed-run

$(BIN)/.installed-run: requirements-run.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements-run.txt
	touch $@

# uv keeps each file's pins unless told to upgrade (UV_ARGS=--upgrade, or --upgrade-package NAME). torch is written
# with '===' so that pip takes the registry's build over a local +cpu wheel that pip's find-links may offer.
LOCK := $(BIN)/uv pip compile pyproject.toml --quiet --python $(BIN)/python $(UV_ARGS)
lock: install  ## write the lock files again from pyproject.toml (uv pip compile)
	$(LOCK) -o requirements.txt
	$(LOCK) --group embedded -o requirements-run.txt
	$(LOCK) --group dev -o requirements-dev.txt
	sed -i 's/^torch==/torch===/' requirements.txt requirements-run.txt requirements-dev.txt

run: install-run  ## services, migrations, a search worker, an index worker, beat and the web server on http://127.0.0.1:8000
	$(BIN)/python -m imgsearch.embedded run

browser:  ## Debian's Chromium and CJK fonts for the browser tests (apt-get, as root, when missing)
	@if [ -x /usr/bin/chromium ] && dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Installing $(BROWSER_PACKAGES) for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES); \
	else \
		echo "The browser tests need Debian's $(BROWSER_PACKAGES); install them as root:" >&2; \
		echo "  sudo apt-get install -y $(BROWSER_PACKAGES)   (or: sudo make browser)" >&2; \
		exit 1; \
	fi

axe: $(AXE)  ## axe-core for the accessibility tests, from npm (npm ci: the version of package-lock.json)

$(AXE): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
		echo "The accessibility tests need npm (Node.js 18 or later) to install axe-core from package-lock.json:" >&2; \
		echo "  sudo apt-get install -y nodejs npm   (or from https://nodejs.org/), then make test again" >&2; \
		exit 1; }
	npm ci --no-audit --no-fund
	@touch $@  # dated now, newer than package-lock.json: the next run does not install again

test: install browser axe  ## the whole test suite against real PostgreSQL + pgvector, Redis, Celery workers and Chromium
	$(BIN)/python -m imgsearch.embedded exec -- $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install  ## ruff (lint, and format check), the import contracts (import-linter), docker-compose.yml's schema; CI runs it
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

fuzz: install  ## Schemathesis against the live test server with many more examples (FUZZ_EXAMPLES=300)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(BIN)/python -m imgsearch.embedded exec -- $(BIN)/python -m pytest -s tests/test_api_contract.py -k fuzzed

index: install-run  ## index a folder into the running service: make index DIR=~/Pictures
	$(BIN)/python -m imgsearch.embedded exec -- $(BIN)/python manage.py index_images "$(DIR)" --tags-from-folders

manage: install-run  ## any manage.py command on the embedded services: make manage CMD="measure_search --n 20"
	$(BIN)/python -m imgsearch.embedded exec -- $(BIN)/python manage.py $(CMD)

load: install  ## 50 clients searching for 60 s against the running `make run` (bench/load.py --help for options)
	$(BIN)/python bench/load.py --url http://127.0.0.1:8000 $(LOAD_ARGS)

# Benchmarks start their own embedded servers under .local/bench-run, so a running `make run` is untouched.
BENCH := IMGSEARCH_DATA_DIR=.local/bench-run $(BIN)/python -m imgsearch.embedded exec -- $(BIN)/python bench/run.py

bench: install  ## benchmarks (quality, memory, indexing, search latency, k-NN at 100k) into docs/benchmarks.md
	$(BENCH) $(BENCH_ARGS)

bench-large: install  ## the benchmarks plus k-NN at 1M vectors and search latency at 100k (hours on 2 cores)
	$(BENCH) --large $(BENCH_ARGS)

clean-data:  ## forget the local database, queue and media (under .local/)
	rm -rf .local
