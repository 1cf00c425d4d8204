# Dropout from Scratch: the two commands a new user needs, and a few for authors.
#
#   make book      install everything into .venv, build the book into _build/html
#   make test      install everything, then run every test (library, notebooks, book build, browser)
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

.PHONY: book test test-lib test-notebooks test-book build-book chromium execute bench lint clean
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export CHROMIUM_PATH ?= /usr/bin/chromium

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

chromium:
	@if [ ! -x "$(CHROMIUM_PATH)" ]; then \
	  echo "Browser tests need Chromium: installing Debian's chromium with apt (never 'playwright install')"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; \
	fi

test-book: $(STAMP) build-book chromium
	$(BIN)/python -m pytest -q tests/book

test: $(STAMP) lint test-lib test-notebooks test-book
	@echo "All tests passed."

execute: $(STAMP)
	$(BIN)/python tools/execute_notebooks.py book/*.ipynb

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf _build .pytest_cache .hypothesis
