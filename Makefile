# Spacesync: the two commands are `make run` (the whole stack locally, with demo data) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## install uv (when missing) and the locked Python environment
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --user --quiet "uv>=0.5"
	@$(UV) sync --frozen --quiet

.PHONY: run
run: setup ## the whole stack locally: Kafka, PostgreSQL, services, demo data (Ctrl+C stops the services)
	@$(UV) run python scripts/run_stack.py

.PHONY: test
test: setup ## all tests: unit and integration (real Kafka and PostgreSQL are started when not given)
	@$(UV) run pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: setup ## only the fast tests that need no infrastructure
	@$(UV) run pytest -m "not integration" $(PYTEST_ARGS)

.PHONY: lint
lint: setup ## ruff, mypy, shellcheck, contracts current and valid (AsyncAPI parser, when npm exists)
	@$(UV) run ruff check .
	@# one mypy run per service's tests: each has its own conftest module
	@$(UV) run mypy libs services/booking-service tests bench scripts
	@$(UV) run mypy services/exchange-writer
	@$(UV) run mypy services/exchange-simulator
	@$(UV) run mypy services/exchange-poller
	@$(UV) run mypy services/availability-service
	@if command -v shellcheck >/dev/null 2>&1; then shellcheck scripts/*.sh .ci/run; fi
	@$(UV) run python -m spacesync.common.contracts --check contracts
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tools/asyncapi --no-audit --no-fund --silent && \
		node tools/asyncapi/validate.mjs contracts/asyncapi.json; \
	else echo "npm not found: skipping the AsyncAPI parser check"; fi

.PHONY: contracts
contracts: setup ## regenerate contracts/ (JSON Schema per event type, AsyncAPI) from the code
	@$(UV) run python -m spacesync.common.contracts contracts

.PHONY: rules
rules: setup ## regenerate the PrometheusRule (deploy/k8s/base/monitoring) from the alert rule file
	@$(UV) run python scripts/deploy/render_rules.py

.PHONY: bench
bench: setup ## benchmarks (print numbers; start the infrastructure first when needed)
	@$(UV) run python bench/booking_throughput.py $(BENCH_ARGS)
	@$(UV) run python bench/ews_simulator.py $(EWS_BENCH_ARGS)
	@$(UV) run python bench/exchange_writer.py $(WRITER_BENCH_ARGS)
	@$(UV) run python bench/exchange_poller.py $(POLLER_BENCH_ARGS)
	@$(UV) run python bench/outlook_propagation.py $(PROPAGATION_BENCH_ARGS)
	@$(UV) run python bench/availability_fold.py $(FOLD_BENCH_ARGS)
	@$(UV) run python bench/availability_api.py $(API_BENCH_ARGS)

.PHONY: infra-up infra-down infra-status
infra-up: ## start the local Kafka and PostgreSQL (processes, 127.0.0.1)
	@bash scripts/infra.sh up
infra-down: ## stop them
	@bash scripts/infra.sh down
infra-status:
	@bash scripts/infra.sh status

.PHONY: clean
clean: infra-down ## stop the infrastructure and delete its data (.local/)
	rm -rf .local

.PHONY: events
events: setup ## print the events on Kafka as they arrive (add ARGS="--data booking.events" for payloads)
	@eval "$$(bash scripts/infra.sh env)"; $(UV) run python -m spacesync.common.kafka.tail $(ARGS)
