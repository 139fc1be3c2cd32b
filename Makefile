# Banyan: `make demo` runs it, `make test` tests it. Both create or reuse .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck contracts bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: a local server, two workers and an example tree, followed live (Ctrl-C stops it)
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## test: the whole suite (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest

## check: format check + lint + types + import contracts + tests
check: lint typecheck contracts test

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

## bench: every benchmark, printing its figures
bench: $(STAMP)
	$(BIN)/python bench/submit.py
	$(BIN)/python bench/query.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
