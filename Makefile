# Two commands on a fresh machine with only Python 3: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck docs pytest servers bench soak clean

$(STAMP): setup.py setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## demo: run examples/counter.py with 4 workers, send 1,000 requests, print the count
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## test: lint, format check, mypy --strict and the docs build, beside the whole test suite
## (they take one core for under a minute while the suite waits on leases and TTLs)
test: $(STAMP) servers
	$(MAKE) --no-print-directory -j4 lint typecheck docs pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict sanic_synchro_ctx

## docs: build the Sphinx site into docs/_build/html, warnings as errors
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

## pytest: the suite writes bytecode even where PYTHONDONTWRITEBYTECODE is set: every server
## it starts is a few fresh interpreters (over 300 in a run), each of which would compile the
## package and the test app from source again, and each xdist worker its assertion rewrites
pytest: $(STAMP) servers
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest

## soak: the linearizability and holder checks of every interface under every fault, long:
## SOAK_OPS operations per client (the suite runs 60); a failure prints its seed to replay
SOAK_OPS ?= 2000
soak: $(STAMP) servers
	SYNCHRO_SOAK_OPS=$(SOAK_OPS) env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest tests/test_linearizability.py -p no:randomly

## bench: side-by-side benchmarks; prints a table and writes benchmarks/RESULTS.md
bench: $(STAMP)
	sh scripts/ensure-servers.sh bench
	$(BIN)/python -m benchmarks.run

## servers: install the server binaries the tests start (redis-server, memcached) when missing
servers:
	sh scripts/ensure-servers.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
