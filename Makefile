# One entry point for set-up, tests and the demo. Every target creates the venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,uvloop]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check protocol agent installer tests bench
	$(BIN)/ruff format --check protocol agent installer tests bench

typecheck: $(STAMP)
	$(BIN)/mypy protocol agent installer

pytest: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/python -m installer.demo

bench: $(STAMP)
	$(BIN)/python bench/protocol_core.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
