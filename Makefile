# hookline — the two commands a newcomer needs are `make dev` and `make test`.
# Both install what they need (a .venv from pyproject.toml, the Kafka jars through Maven).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv chromium dev test test-faults soak lint format bench kafka-start kafka-stop schemas clean

help:
	@echo "make dev          run hookline locally (broker, services, demo)"
	@echo "make test         run the test suite against a real Kafka broker"
	@echo "make test-faults  run the fault suite at full size (prints the fault table)"
	@echo "make soak         20 minutes of steady load; memory and open files each minute"
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
# Two workers: a test mostly waits (on Kafka, on processes, on deadlines), so two
# share this machine's two cores well; TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: venv chromium
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The fault harness at full size (every fault kind, 300 signed posts a second; override
# HOOKLINE_FAULT_RATE/_KINDS/_HOLD), the outage start, the cluster's own fault tests,
# 10,000 generated bad requests, and schemathesis with more examples per operation.
FAULT_TABLE ?= .cache/fault-table.txt
test-faults: venv
	@mkdir -p .cache
	HOOKLINE_FAULT_ROUNDS=$${HOOKLINE_FAULT_ROUNDS:-1} \
	HOOKLINE_FAULT_KINDS=$${HOOKLINE_FAULT_KINDS:-leader,rolling,freeze,cut,process} \
	HOOKLINE_FAULT_RATE=$${HOOKLINE_FAULT_RATE:-300} \
	HOOKLINE_FAULT_REPORT=$(FAULT_TABLE) \
	HOOKLINE_BAD_INPUT_EXAMPLES=$${HOOKLINE_BAD_INPUT_EXAMPLES:-10000} \
	HOOKLINE_SCHEMATHESIS_EXAMPLES=$${HOOKLINE_SCHEMATHESIS_EXAMPLES:-50} \
	$(BIN)/python -m pytest -s \
		tests/e2e/test_faults.py tests/e2e/test_outage_start.py tests/localkafka/test_cluster.py \
		tests/e2e/test_bad_input.py::test_generated_requests_never_get_a_server_error \
		tests/admin/test_openapi.py::test_schemathesis_finds_no_server_error $(PYTEST_ARGS)
	@cat $(FAULT_TABLE)

# 20 minutes at 200 posts a second through the whole stack; footprint printed each minute.
soak: venv
	HOOKLINE_SOAK_MINUTES=$${HOOKLINE_SOAK_MINUTES:-20} HOOKLINE_SOAK_RATE=$${HOOKLINE_SOAK_RATE:-200} \
	$(BIN)/python -m pytest -s -m soak tests/faults/test_soak.py $(PYTEST_ARGS)

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
