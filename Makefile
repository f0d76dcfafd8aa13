# Two commands for a newcomer: `make up` and `make test`. Both install what
# they need and are safe to re-run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Tests run on this many workers, a file at a time (pytest-xdist); 0 runs them in this process, one by one.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: up test test-quick bench system-deps test-deps venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

venv: $(STAMP)

system-deps:
	@scripts/system-deps.sh

test-deps:
	@scripts/system-deps.sh --test

test: $(STAMP) test-deps
	$(PYTEST) $(PYTEST_ARGS)

test-quick: $(STAMP) test-deps
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

up: $(STAMP) system-deps
	$(BIN)/sojourn up

bench: $(STAMP) system-deps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache
