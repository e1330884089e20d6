# The two commands a newcomer needs: `make demo` (the main job, end to end) and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__PARALLELISM ?= 4
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test lint ui bench clean stack-deps test-deps stack-up stack-down

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install everything

demo: $(STAMP) ## run the whole pipeline on the embedded default and print where outputs are
	$(BIN)/recomart demo

test: $(STAMP) test-deps ## lint + the whole test suite (slow integration tests included)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

ui: $(STAMP) ## start the Airflow UI (airflow standalone) on http://localhost:8080; Ctrl-C stops it
	$(BIN)/recomart ui

# Debian's prometheus for `recomart stack` and its integration test (everything else is a pip
# package). Idempotent and quiet; without root or apt it says so and the Prometheus test skips.
stack-deps:
	@command -v prometheus >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq prometheus >/dev/null 2>&1 || \
	     { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq prometheus >/dev/null 2>&1; }) \
	      || echo "stack-deps: could not install prometheus (the Prometheus test will skip)"; \
	  else echo "stack-deps: prometheus not installed (sudo apt-get install -y prometheus)"; fi; }

# What the tests need beyond pip packages: prometheus (above) and Debian's chromium for the
# explorer page's headless-browser test. Same rules: idempotent, quiet, says so when it cannot.
test-deps: stack-deps
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || \
	     { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) \
	      || echo "test-deps: could not install chromium (the explorer screenshot test will skip)"; \
	  else echo "test-deps: chromium not installed (sudo apt-get install -y chromium)"; fi; }

stack-up: $(STAMP) stack-deps ## the production topology as local processes (recomart stack up)
	$(BIN)/recomart stack up

stack-down:
	$(BIN)/recomart stack down

bench: $(STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf .airflow recomart_lake/* .pytest_cache
