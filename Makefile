# hookline — the two commands a newcomer needs are `make dev` and `make test`.
# Both install what they need (a .venv from pyproject.toml, the Kafka jars through Maven).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv chromium dev test test-faults lint format bench kafka-start kafka-stop schemas clean

help:
	@echo "make dev          run hookline locally (broker, services, demo)"
	@echo "make test         run the test suite against a real Kafka broker"
	@echo "make test-faults  run the fault suite at full size"
	@echo "make lint         ruff (lint, format check), mypy --strict, deploy checks"
	@echo "make bench        run the benchmarks and print a table"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,lint]'
	@touch $(STAMP)

venv: $(STAMP)

dev: venv
	$(BIN)/hookline dev

# The console's browser tests drive Debian's Chromium (never a browser download);
# installed here when missing (as root, as CI runs).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the console's browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || { \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; }

# The pytest session fixture starts the project's own broker unless
# HOOKLINE_KAFKA_BOOTSTRAP_SERVERS names a cluster, and stops what it started.
test: venv chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-faults: venv
	HOOKLINE_FAULT_ROUNDS=$${HOOKLINE_FAULT_ROUNDS:-6} $(BIN)/python -m pytest -m faults tests/e2e tests/localkafka $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m deploy.checks

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv
	$(BIN)/python -m bench

schemas: venv
	$(BIN)/python -m shared.schemas

kafka-start: venv
	$(BIN)/hookline kafka start

kafka-stop: venv
	$(BIN)/hookline kafka stop

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
