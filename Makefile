# Two commands for a fresh machine (README.md): `make demo` and `make test`.
# Both create .venv if it is missing and install the project into it; a second run reuses it.

VENV    := .venv
PY      := $(VENV)/bin/python
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
LAKE    ?= ./lakehouse
DROPS   ?= build/sample-drops
PEOPLE  ?= 2000
SEED    ?= 7

# No telemetry, no downloads at run time, and time for Prefect's first start on a new machine.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export GX_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: demo test lint bench clean

# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (as on our machines)
# Python never caches it, and every process then compiled GX, Prefect and Splink again on import
# (29 s wall to import the three and Polars and DuckDB on a 2-core machine, 7 s compiled).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[dev]'
	touch $(STAMP)

# The main job: generate sample drops, deliver them, run the whole pipeline once on the local
# lake, ask the published mart a question, show the stewards' report and score the entities
# against the generator's truth.
demo: $(STAMP)
	rm -rf $(DROPS)
	$(BIN)/fusionlake generate --people $(PEOPLE) --seed $(SEED) --out $(DROPS)
	for dir in $(DROPS)/*/*/; do \
	  agency=$$(basename $$(dirname $$dir)); feed=$$(basename $$dir); \
	  $(BIN)/fusionlake drop --lake $(LAKE) --agency $$agency --feed $$feed $$dir* || exit 1; \
	done
	$(BIN)/fusionlake run --lake $(LAKE)
	$(BIN)/fusionlake sql --lake $(LAKE) "select display_name, agencies, roles, record_count \
	  from entity where agency_count >= 2 order by record_count desc, display_name limit 10"
	$(BIN)/fusionlake report --lake $(LAKE)
	$(BIN)/fusionlake evaluate --lake $(LAKE) --truth $(DROPS)/truth.csv

test: lint
	$(BIN)/pytest -n 3

# Style, and the layers of the repository (.importlinter): lake < transforms < expectations <
# pipeline < flows < cli, the generator beside them.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build lakehouse .pytest_cache
