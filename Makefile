# One entry point for set-up, tests and the demo. Every target creates the venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck pytest pytest-pure native demo bench clean

# NATIVE=0 skips the compiled build (protocol/NATIVE.md); without a C compiler it is skipped too
NATIVE ?= 1
NATIVE_SOURCES := $(wildcard protocol/*.py protocol/aio/*.py)
NATIVE_MANIFEST := protocol/native-build.json
export HAVE_HEADERS := import os, sys, sysconfig; \
  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))

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

ifeq ($(NATIVE),1)
native: $(NATIVE_MANIFEST)
else
native:
endif

$(NATIVE_MANIFEST): $(STAMP) setup.py $(NATIVE_SOURCES)
	@if ! command -v "$${CC:-cc}" >/dev/null 2>&1; then \
	  echo "no C compiler ($${CC:-cc}): the tunnel runs as pure Python; install gcc to compile it"; \
	elif ! $(BIN)/python -c "$$HAVE_HEADERS"; then \
	  echo "no Python.h for $(BIN)/python: the tunnel runs as pure Python; install python3-dev"; \
	else \
	  echo "compiling the tunnel's data path with mypyc (protocol/NATIVE.md)"; \
	  rm -rf build/native; \
	  PCG_NATIVE=1 $(BIN)/python setup.py -q build_ext --inplace \
	    --build-temp build/native/temp --build-lib build/native/lib >build-native.log 2>&1 \
	    || { cat build-native.log; exit 1; }; \
	fi

pytest: native
	$(BIN)/pytest -q $(PYTEST_ARGS)

# the same core and asyncio tests once more on the pure-Python modules (the fallback); the
# slow one builds a compiled wheel, which the first pass did
pytest-pure: $(STAMP)
	PCG_NATIVE=0 $(BIN)/pytest -q -p no:cacheprovider -m "not slow" tests/protocol

test: lint typecheck pytest pytest-pure

demo: native
	$(BIN)/python -m installer.demo

bench: native
	$(BIN)/python bench/protocol_core.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis build build-native.log
	rm -f $(NATIVE_MANIFEST) *.so protocol/*.so protocol/aio/*.so
