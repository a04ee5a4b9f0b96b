# Every target creates what it needs: a fresh clone with Python 3.11+ runs
# `make run` or `make test` and nothing else.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
PROTOS := $(shell find protos -name '*.proto' | sort)
# promtool (checks the alerting rules) comes with Debian's prometheus package;
# installing it does not start the daemon.
PROMTOOL := $(shell command -v promtool 2>/dev/null || echo /usr/bin/promtool)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint proto check-generated migrate bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(PROMTOOL):
	command -v promtool >/dev/null || { $(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }

# The root package holds the build tools; clients/node (an npm workspace) the
# Node.js client's own dependencies, installed in the same node_modules.
$(NODE_STAMP): package.json package-lock.json clients/node/package.json
	npm install --no-audit --no-fund --silent
	touch $@

## run: serve BudgetService and ImageService locally (SQLite, offline provider unless OPENAI_API_KEY is set)
run: $(STAMP)
	$(VENV)/bin/recipeimage-dev

## test: the whole test suite, on SQLite and on the local PostgreSQL (the Node.js client's tests too)
test: $(STAMP) $(NODE_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## lint: buf lint for the contracts, ruff and mypy --strict for the Python, the import layers, the compose file against the Compose spec, the alerting rules and the dashboard
lint: $(STAMP) $(NODE_STAMP) $(PROMTOOL)
	npx --no-install buf lint
	$(VENV)/bin/ruff check services tests
	$(VENV)/bin/ruff format --check services tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(PROMTOOL) check rules services/monitoring/prometheus-rules.yml
	$(PY) -m json.tool services/monitoring/grafana-dashboard.json > /dev/null

# protoc with the mypy-protobuf plugins; $(1) is the output directory.
define PROTOC
	mkdir -p $(1)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -I protos \
		--python_out=$(1) --grpc_python_out=$(1) --mypy_out=$(1) --mypy_grpc_out=$(1) $(PROTOS)
	find $(1)/recipeimage -type d -exec touch {}/__init__.py \;
endef

## proto: regenerate generated/ from protos/ (the only writer of generated/)
proto: $(STAMP)
	rm -rf generated/recipeimage
	$(call PROTOC,generated)

## check-generated: fail when generated/ is stale
check-generated: $(STAMP)
	rm -rf .generated-check
	$(call PROTOC,.generated-check)
	diff -r generated/recipeimage .generated-check/recipeimage || \
		{ echo "generated/ is stale: run 'make proto' and commit" >&2; exit 1; }
	rm -rf .generated-check

## migrate: apply both services' migrations to their configured databases
migrate: $(STAMP)
	$(VENV)/bin/recipeimage-migrate all

## bench: the benchmarks, printed as ratios against a baseline from the same run
bench: $(STAMP)
	$(PY) -m tests.bench $(BENCH)

clean:
	rm -rf $(VENV) node_modules
