# Quick start: `make run` (refresh the bundled sample) and `make test` (every test).
# the newest supported Python the machine has (3.13, 3.12, 3.11), or PYTHON=...
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' \
	  2>/dev/null && { command -v $$p; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-py313 lint format dev benchmark lock clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || test -n "$(PYTHON)" || { echo "make: no supported Python found: install Python 3.11, 3.12 or 3.13 (or name one: make run PYTHON=/path/to/python3.x)" >&2; exit 2; }
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
	$(BIN)/python -m pytest -n 2 --dist worksteal

# the quick start and the tests on Python 3.13 in a Debian 13 root (debootstrap, cached in the temp folder; root only)
test-py313: setup
	bash scripts/py313.sh

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
