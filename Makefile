# ferry: the two commands a new user runs are `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
CONSTRAINTS := requirements/constraints.txt
REPO ?= model-repository
MODEL ?= digits

.DEFAULT_GOAL := help
.PHONY: help serve demo test lint check clean bench bench-tools browser proto

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	@echo "==> creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ferry needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-serve: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	@echo "==> installing ferry with the serving and Keras demo extras into $(VENV) (pinned by $(CONSTRAINTS))"
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[serve,demo,client]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(CONSTRAINTS) tests/pipeline_steps/pyproject.toml | $(BIN)/python
	@echo "==> installing ferry with every extra and the test tools into $(VENV)"
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[all,dev]'
	@echo "==> installing the custom pipeline step the tests use (tests/pipeline_steps)"
	$(PIP) install -q --no-build-isolation --no-index -e tests/pipeline_steps
	@touch $@ $(VENV)/.installed-serve

HTTP_PORT ?= 8000
GRPC_PORT ?= 8001

serve: $(VENV)/.installed-serve ## Build the demo model (once) and serve it on 8000 (REST) / 8001 (gRPC)
	@if $(BIN)/ferry --repo $(REPO) show $(MODEL) >/dev/null 2>&1; then \
	  echo "==> $(REPO) already holds '$(MODEL)' (run 'make demo' to train a new version)"; \
	else \
	  echo "==> training the seed network on scikit-learn's digits and importing it into $(REPO)"; \
	  $(BIN)/ferry --repo $(REPO) demo --name $(MODEL); \
	fi
	@echo "==> serving $(REPO) on http://127.0.0.1:$(HTTP_PORT) (REST) and 127.0.0.1:$(GRPC_PORT) (gRPC); once it says 'serving', try:"
	@echo "  curl -s -H 'Content-Type: application/json' -d @examples/seed/sample.json http://127.0.0.1:$(HTTP_PORT)/predict"
	@echo "  curl -s -H 'Content-Type: application/json' -d @examples/seed/v2.json http://127.0.0.1:$(HTTP_PORT)/v2/models/$(MODEL)/infer"
	@echo "  $(BIN)/python -c \"import json; from ferry.client import GrpcClient; print(GrpcClient('127.0.0.1:$(GRPC_PORT)').predict('$(MODEL)', json.load(open('examples/seed/sample.json'))['data']))\""
	@echo "==> and open http://127.0.0.1:$(HTTP_PORT)/console in a browser: the models, try them (draw a digit), live figures, load/unload"
	$(BIN)/ferry serve $(REPO) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --log-format text

demo: $(VENV)/.installed-serve ## Train and import a new version of the demo model
	$(BIN)/ferry --repo $(REPO) demo --name $(MODEL)

lint: $(VENV)/.installed-test ## ruff, import-linter layer contracts, mypy --strict
	@echo "==> ruff"
	$(BIN)/ruff check .
	@echo "==> import-linter (the layer boundaries of docs/architecture.md)"
	$(BIN)/lint-imports --no-cache
	@echo "==> mypy --strict"
	$(BIN)/mypy

test: $(VENV)/.installed-test browser lint ## Install what the tests need, lint, and run every test
	@echo "==> pytest (unit, integration, e2e)"
	@# Every extra was installed above: one that is missing fails the run (tests/extras.py).
	FERRY_REQUIRE_EXTRAS=1 $(BIN)/python -m pytest

# make bench: every figure of the Performance section of issue 4 in one run (~20 minutes),
# written to benchmarks/results.md. Never part of `make test`. BENCH_PYTHON runs it with an
# interpreter you already have (e.g. BENCH_PYTHON=/path/to/venv/bin/python) instead of .venv;
# BENCH_ARGS passes options (python -m benchmarks --help), e.g. BENCH_ARGS='--duration 5'.
BENCH_PYTHON ?= $(BIN)/python
BENCH_ARGS ?=
# command:Debian package pairs of the compiled tools the benchmark drives.
BENCH_TOOLS := wrk:wrk h2load:nghttp2-client taskset:util-linux

bench: bench-tools $(if $(filter $(BIN)/python,$(BENCH_PYTHON)),$(VENV)/.installed-test) ## Measure ferry against raw ONNX Runtime, FastAPI and the Flask seed
	$(BENCH_PYTHON) -m benchmarks $(BENCH_ARGS)

bench-tools: ## Install the load generators (wrk, h2load) with apt-get if missing
	@missing=""; \
	for pair in $(BENCH_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "==> installing$$missing with apt-get"; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The web console's browser tests (tests/integration/console) drive Debian's Chromium through
# Playwright; Playwright's own browser download is never used (FERRY_CHROMIUM names another).
browser: ## Install the headless browser the console tests drive (Debian's chromium) if missing
	@if [ -z "$$FERRY_CHROMIUM" ] && ! command -v chromium >/dev/null 2>&1; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "==> installing chromium with apt-get (for the console's browser tests)"; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

proto: $(VENV)/.installed-test ## Regenerate the gRPC code in src/ferry/protocols/grpc/_generated
	$(BIN)/python scripts/generate_grpc.py

clean: ## Remove the virtualenv, build outputs and the demo repository
	rm -rf $(VENV) build $(REPO) .pytest_cache .mypy_cache .ruff_cache benchmarks/.work
