# The two commands: `make demo` (a full sample build) and `make test` (the whole suite).
# Both install what they need: system tools through apt when run as root, Python packages into .venv.
SHELL := /bin/bash
VENV ?= .venv
STAMP := $(VENV)/.mumu-installed
DATA_ROOT ?= data/sample
PROFILE ?= sample
PYTEST_ARGS ?=
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: demo test lint system-deps venv clean bench kill-test server server-down

demo: $(STAMP)
	$(VENV)/bin/mumu build all --profile $(PROFILE) --data-root $(DATA_ROOT)
	@for d in MUCaps MUImage MUVideo MUEdit; do $(VENV)/bin/mumu validate $(DATA_ROOT)/datasets/$$d || exit 1; done
	@echo "datasets are in $(DATA_ROOT)/datasets"

test: $(STAMP) lint
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# ruff (pyproject.toml [tool.ruff]) and the package layers (ARCHITECTURE.md, [tool.importlinter])
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

server: $(STAMP)
	$(VENV)/bin/mumu server up

server-down:
	$(VENV)/bin/mumu server down

bench: $(STAMP)
	$(VENV)/bin/mumu bench

kill-test: $(STAMP)
	$(VENV)/bin/python -m bench.kill_test --kills 5

system-deps:
	@bash scripts/install-system-deps.sh

venv: $(STAMP)

$(STAMP): pyproject.toml scripts/install-python-deps.sh | system-deps
	bash scripts/install-python-deps.sh $(VENV)
	touch $@

clean:
	rm -rf $(DATA_ROOT) .prefect
