# One entry point for set-up, tests and the demo. Every target creates the venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck pytest pytest-pure native demo bench clean

# NATIVE=0 does not build the compiled data path (protocol/NATIVE.md; a build already there and
# up to date still runs: PCG_NATIVE=0 runs pure Python); without a C compiler it is not built
NATIVE ?= 1
NATIVE_MANIFEST := protocol/native-build.json
NATIVE_ARTIFACTS := $(NATIVE_MANIFEST) protocol/*.so protocol/aio/*.so
export HAVE_HEADERS := import os, sys, sysconfig; \
  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))
# exit 0 when the compiled build in place matches every source, as protocol.native decides
export NATIVE_FRESH := import sys; from pathlib import Path; from protocol import native as n; \
  root = Path("protocol").resolve(); built = n.compiled_modules(root); \
  sys.exit(not built or n.stale_reason(root, built) is not None)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,uvloop]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check protocol agent installer tests bench setup.py
	$(BIN)/ruff format --check protocol agent installer tests bench setup.py

typecheck: $(STAMP)
	$(BIN)/mypy protocol agent installer

# rebuilt whenever protocol.native would not run what is there (a source changed, a module was
# added or removed, no manifest), and when setup.py (what is compiled, and how) is newer
native: $(STAMP)
ifeq ($(NATIVE),1)
	@if [ $(NATIVE_MANIFEST) -nt setup.py ] && $(BIN)/python -W ignore -c "$$NATIVE_FRESH"; then \
	  :; \
	elif ! command -v "$${CC:-cc}" >/dev/null 2>&1; then \
	  echo "no C compiler ($${CC:-cc}): the tunnel runs as pure Python; install gcc to compile it"; \
	elif ! $(BIN)/python -c "$$HAVE_HEADERS"; then \
	  echo "no Python.h for $(BIN)/python: the tunnel runs as pure Python; install python3-dev"; \
	else \
	  echo "compiling the tunnel's data path with mypyc (protocol/NATIVE.md)"; \
	  rm -rf build/native $(NATIVE_ARTIFACTS); \
	  PCG_NATIVE=1 $(BIN)/python setup.py -q build_ext --inplace \
	    --build-temp build/native/temp --build-lib build/native/lib >build-native.log 2>&1 \
	    || { cat build-native.log; exit 1; }; \
	fi
endif

pytest: native
	$(BIN)/pytest -q $(PYTEST_ARGS)

# the same core and asyncio tests once more on the pure-Python modules (the fallback); the
# slow one builds a compiled wheel, which the first pass did
pytest-pure: native
	PCG_NATIVE=0 $(BIN)/pytest -q -p no:cacheprovider -m "not slow" tests/protocol

test: lint typecheck pytest pytest-pure

demo: native
	$(BIN)/python -m installer.demo

bench: native
	$(BIN)/python bench/protocol_core.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis build build-native.log
	rm -f $(NATIVE_ARTIFACTS)
