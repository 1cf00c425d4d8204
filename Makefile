# Dropout from Scratch: the two commands a new user needs, and a few for authors.
#
#   make book      install everything into .venv, build the book into _build/html
#   make test      install everything, then run every test (library, notebooks, book build, browser,
#                  and a bare-venv `pip install ".[book]"` that runs four chapters)
#                  `make test BROWSER=0` skips the browser tests (no Chromium needed)
#   make execute   authors: re-execute every chapter in place so committed outputs are fresh
#   make bench     print the benchmark ratio tables
#
# Everything installs into .venv from requirements.txt (exact pins) on the first run.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2
SHELL  := /bin/bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: book test test-lib test-notebooks test-book test-packaging build-book chromium execute \
        bench lint clean api-pages
export CHROMIUM_PATH ?= /usr/bin/chromium
# BROWSER=0 skips the browser tests (tests/book/test_browser.py); everything else still runs.
BROWSER ?= 1
# Chapters the packaging check runs in a bare venv (file-name prefixes in book/).
PACKAGING_CHAPTERS ?= 01 02 06 13

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

book: $(STAMP) build-book
	@echo "The book is built: open $(CURDIR)/_build/html/index.html"

build-book: $(STAMP)
	rm -rf _build/html _build/jupyter_execute
	$(BIN)/jupyter-book build . -W -n --keep-going || { cat _build/html/reports/*.log 2>/dev/null; exit 1; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check dropoutlib tests benchmarks tools

test-lib: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) tests --ignore=tests/book --doctest-modules dropoutlib

test-notebooks: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile --nbval --nbval-current-env \
	  --nbval-sanitize-with book/nbval_sanitize.cfg -p no:cacheprovider book

# Browser tests drive a real Chromium (never `playwright install`, which downloads one).
# Without one, on Debian/Ubuntu as root or with password-less sudo, install it with apt;
# otherwise stop with what to do instead.
chromium:
	@if [ "$(BROWSER)" = 0 ] || [ -x "$(CHROMIUM_PATH)" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	  echo "Browser tests need Chromium: installing Debian's chromium with apt"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "The browser tests need Chromium or Chrome, and $(CHROMIUM_PATH) does not exist."; \
	  echo "  Point at an installed one:  make test CHROMIUM_PATH=/path/to/chromium"; \
	  echo "    (macOS: CHROMIUM_PATH='/Applications/Google Chrome.app/Contents/MacOS/Google Chrome')"; \
	  echo "  or skip the browser tests:  make test BROWSER=0"; \
	  exit 1; \
	fi

test-book: $(STAMP) build-book chromium
	$(BIN)/python -m pytest -q tests/book $(if $(filter 0,$(BROWSER)),-m "not browser")

# A reader's install: a bare venv, `pip install ".[book]" nbclient ipykernel`, four chapters run.
test-packaging:
	$(PYTHON) tools/check_packaging.py $(PACKAGING_CHAPTERS)

# Rewrite the Library reference pages (book/api/) after adding or removing a public name.
api-pages: $(STAMP)
	$(BIN)/python tools/api_pages.py

test: $(STAMP) lint test-lib test-notebooks test-book test-packaging
	@echo "All tests passed."

execute: $(STAMP)
	$(BIN)/python tools/execute_notebooks.py book/*.ipynb

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf _build .pytest_cache .hypothesis
