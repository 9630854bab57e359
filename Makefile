# Touchstone: `make up` runs it on this machine, `make test` runs every test.
# The Makefile bootstraps its own toolchain: uv (installed with pip when missing) and the
# workspace environment from the committed lock file.

PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help env up test test-fast lint bench chaos images clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/touchstone: uv.lock pyproject.toml */pyproject.toml services/*/pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --all-packages
	@touch $@

env: $(BIN)/touchstone ## Create or update the environment from uv.lock

up: env ## Run Touchstone with embedded defaults (NATS, SQLite, local agent); Ctrl-C stops it
	$(BIN)/touchstone up

test: env ## Run the whole test suite (real nats-server, SQLite, HTTP, SSH; Docker where it runs)
	$(BIN)/pytest

test-fast: env ## Only the fast unit tests (no outside process: broker, Docker, browser, servers): about a minute
	$(BIN)/pytest -m "not integration" -q

lint: env ## ruff on everything, mypy --strict on shared/, no import cycles (import-linter)
	$(BIN)/ruff check .
	$(BIN)/mypy -p touchstone.shared
	$(BIN)/lint-imports --no-cache

bench: env ## Benchmarks: JSON under bench/results/ and a table
	$(BIN)/python bench/run.py
	$(BIN)/python services/submission/bench/api_bench.py --out bench/results

chaos: env ## Fault suite on a 3-node NATS cluster in network namespaces (root): bench/results/chaos.json
	$(BIN)/python -m touchstone.chaos bench/results

images: ## Build the task and service images (mmdebstrap + docker import; each skipped when up to date)
	bash images/build.sh
	bash images/service.sh

clean: ## Remove the environment and caches (keeps .touchstone data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
