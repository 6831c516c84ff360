# Quick start: `make run` (refresh the bundled sample) and `make test` (every test).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint format dev benchmark lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# install, then build the dbt manifest Dagster reads (dbt parse)
setup: $(STAMP)
	$(BIN)/python -c "from pipelines.transform.project import ensure_manifest; ensure_manifest()"

run: setup
	$(BIN)/care-outcomes refresh

test: setup lint
	$(BIN)/python -m pytest -n 2

# ruff (settings in pyproject.toml): lint and formatting, checked by `make test`; `make format` rewrites
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# the Dagster UI over the same instance `care-outcomes refresh` records its runs in (beside the warehouse)
dev: setup
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/warehouse/dagster_home} && mkdir -p $$DAGSTER_HOME && \
	  { test -f $$DAGSTER_HOME/dagster.yaml || cp deploy/dagster.yaml $$DAGSTER_HOME/; } && \
	  DAGSTER_HOME=$$DAGSTER_HOME $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

benchmark: setup
	$(BIN)/python scripts/benchmark.py

# refresh constraints.txt from the current .venv after changing pyproject.toml
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^care-outcomes' > constraints.txt

clean:
	rm -rf $(VENV) warehouse dbt/target dbt/logs .dagster_home
