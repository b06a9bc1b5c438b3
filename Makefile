# Fresh machine: `make demo` (install + train on synthetic data), `make test` (install + lint + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCALES := src/paddyclf/i18n/locale
# ONNX Runtime Web for in-browser diagnosis: pinned in package.json/package-lock.json, copied here (git-ignored)
WEB_RUNTIME := src/paddyclf/serve/static/vendor/onnxruntime-web/VERSION

.PHONY: install install-all web-runtime demo test test-fast lint messages clean

# the training and inference core (no Node.js needed); the web app's in-browser runtime: web-runtime
install: $(VENV)/.installed

web-runtime: $(WEB_RUNTIME)

# every extra: what `make test` tests (the deploy runtimes and the web app included)
install-all: $(VENV)/.installed-all $(WEB_RUNTIME)

# npm ci installs exactly the lockfile's versions; install scripts are not needed for the dist/ files
$(WEB_RUNTIME): package.json package-lock.json scripts/vendor_web_runtime.mjs
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js and npm (Debian: apt-get install nodejs npm); \
	the web app needs it once, to fetch ONNX Runtime Web for in-browser diagnosis." >&2; exit 2; }
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	npm run --silent vendor

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# one pip run for everything (not dev first, then the rest): a fresh `make test` resolves once. --no-compile:
# byte-compiling every installed file (TensorFlow's, OpenVINO's...) took 56 s of a 2 min 52 s install on 2
# cores; the tests compile what they import, once (see `test`)
$(VENV)/.installed-all: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e '.[dev,deploy,serve,track,tune]'
	touch $(VENV)/.installed $@

demo: install
	$(BIN)/paddyclf demo

# ruff, then the layers of docs/ARCHITECTURE.md and no import cycles (import-linter, pyproject.toml)
lint: install
	$(BIN)/ruff check src tests *.py
	$(BIN)/lint-imports

# the 20 slowest tests are listed at the end of every run: the suite's time budget is 12 minutes with the install.
# Bytecode is written even where PYTHONDONTWRITEBYTECODE is set: the install compiled nothing (--no-compile),
# and the suite starts Python subprocesses (servers, torchrun, the CLI) that would otherwise each compile torch anew
test: install-all lint
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest --durations=20

# the core for a developer's loop (under 3 minutes on 2 cores): every test not marked slow
test-fast: install-all
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -m "not slow"

# the web app's English strings (templates, serve/*.py, static/app.js) -> messages.pot -> every messages.po;
# then translate the new or changed entries (README, "Languages"). tests/test_i18n.py fails until they are.
messages: install-all
	$(BIN)/pybabel extract -F babel.cfg -k N_ --sort-by-file -o $(LOCALES)/messages.pot .
	$(BIN)/pybabel update -i $(LOCALES)/messages.pot -d $(LOCALES) --no-fuzzy-matching

clean:
	rm -rf $(VENV) runs data/demo .pytest_cache .ruff_cache node_modules src/paddyclf/serve/static/vendor
