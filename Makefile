# Banyan: `make demo` runs it, `make test` tests it. Both create or reuse .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck contracts bench faults fuzz docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: a local server, two workers and an example tree, followed live (Ctrl-C stops it)
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## test: the whole suite, then the docs build (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory docs

## check: format check + lint + types + import contracts + tests
check: lint typecheck contracts test

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

## bench: every benchmark, then one table of all the figures
bench: $(STAMP)
	$(BIN)/python bench/all.py

## faults: the full reliability scorecard (every fault at full size, on SQLite and on PostgreSQL)
faults: $(STAMP)
	$(BIN)/python bench/faults.py

## fuzz: schemathesis against /openapi.json with many more examples than `make test`
fuzz: $(STAMP)
	BANYAN_FUZZ_EXAMPLES=1000 $(BIN)/python -m pytest tests/fuzz -q -p no:randomly --timeout 3600

## docs: the Sphinx site in docs/_build/html (warnings are errors)
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
