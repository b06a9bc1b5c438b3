# Fresh machine: `make demo` (install + train on synthetic data), `make test` (install + lint + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-all demo test test-fast lint clean

install: $(VENV)/.installed

# every extra: what `make test` tests (the deploy runtimes and the web app included)
install-all: $(VENV)/.installed-all

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

$(VENV)/.installed-all: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,deploy,serve]'
	touch $@

demo: install
	$(BIN)/paddyclf demo

# ruff, then the layers of docs/ARCHITECTURE.md and no import cycles (import-linter, pyproject.toml)
lint: install
	$(BIN)/ruff check src tests *.py
	$(BIN)/lint-imports

test: install-all lint
	$(BIN)/python -m pytest

# the core for a developer's loop (under 3 minutes on 2 cores): every test not marked slow
test-fast: install-all
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs data/demo .pytest_cache .ruff_cache
