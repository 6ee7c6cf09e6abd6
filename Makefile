# The two commands that matter: `make up` and `make test`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up down status test lint format bench install clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its test tools

up: install ## Start the local platform and run the data pipeline once
	$(VENV)/bin/mlops up

down: install ## Stop the local platform (data is kept)
	$(VENV)/bin/mlops down

status: install
	$(VENV)/bin/mlops status

lint: install ## ruff: lint and formatting
	$(VENV)/bin/ruff check src tests dags bench
	$(VENV)/bin/ruff format --check src tests dags bench

test: install lint charts-test ## Set up everything and run the whole test suite
	$(VENV)/bin/pytest --ignore=tests/charts

.PHONY: charts-test
charts-test: install ## Helm charts: get helm/promtool, lint --strict, render (+ ci/*.yaml), package, tests/charts
	@scripts/ensure-tools.sh
	@export PATH="$(CURDIR)/.tools/bin:$$PATH"; set -euo pipefail; \
	for chart in charts/*/; do \
	  name="$$(basename "$$chart")"; \
	  if grep -q '^dependencies:' "$$chart/Chart.yaml"; then helm dependency build "$$chart" --skip-refresh >/dev/null; fi; \
	  helm lint --strict "$$chart" -n mlops >/dev/null || { helm lint --strict "$$chart" -n mlops; exit 1; }; \
	  helm template "$$name" "$$chart" -n mlops >/dev/null; \
	  for values in "$$chart"ci/*.yaml; do \
	    if [ -e "$$values" ]; then helm template "$$name" "$$chart" -n mlops -f "$$values" >/dev/null; fi; \
	  done; \
	done; \
	rm -rf build/charts; helm package charts/*/ -d build/charts >/dev/null; \
	echo "charts: lint --strict, template and package OK for $$(ls build/charts | wc -l) charts (build/charts)"
	$(VENV)/bin/pytest tests/charts -q

format: install
	$(VENV)/bin/ruff check --fix src tests dags bench
	$(VENV)/bin/ruff format src tests dags bench

bench: install ## Benchmarks (key=value lines); figures go to docs/BENCHMARKS.md
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) bench/ingest.py
	$(PY) bench/train.py
	$(PY) bench/serve.py

clean: ## Remove the virtualenv and caches (not the .mlops state folder)
	rm -rf $(VENV) .pytest_cache .ruff_cache
