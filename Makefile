# One entry point for every developer command. `make dev` and `make test` work from a
# fresh clone: each installs what it needs first (idempotently, keyed on the lock files).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAGE ?= dev
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: help install dev cli test check typecheck bench soak openapi build synth diff deploy smoke lint clean

help:
	@echo "make install install everything make dev and make test need (Python venv, node_modules, DynamoDB Local, checkov)"
	@echo "make dev     install everything and start the local server (workflow-runs dev) on 127.0.0.1:8000 (internal: 8001)"
	@echo "make dev     PORT=8100 INTERNAL_PORT=8101 ARGS='--dynamodb moto': other ports, any workflow-runs dev flags"
	@echo "make cli     ARGS='runs list': the workflow-runs client (same as bin/workflow-runs runs list)"
	@echo "make test    install everything and run every test"
	@echo "make check   the inner loop: lint, types, unit and API tests (no server, no browser, nothing slow)"
	@echo "make bench   run the benchmarks and write docs/benchmarks.md"
	@echo "make soak    long reliability runs (load, fuzzing, contention)"
	@echo "make typecheck  mypy over layers/, functions/ and local/ (part of make test)"
	@echo "make lint   ruff over the whole repository (part of make test)"
	@echo "make openapi regenerate docs/openapi.json"
	@echo "make build   assemble the Lambda assets and the dependencies layer (arm64)"
	@echo "make synth   build and synthesize the CDK app"
	@echo "make synth   STAGE=prod CONTEXT='jwtIssuer=https://… jwtAudience=… jwksUrl=https://…'"
	@echo "make diff    STAGE=dev|prod: what a deploy would change (needs AWS credentials)"
	@echo "make deploy  STAGE=dev|prod: deploy with the CDK CLI (needs AWS credentials)"
	@echo "make smoke   SMOKE_URL=… SMOKE_TOKEN=…: execute and stream one run on a deployed stage"
	@echo "make clean   remove the venvs, node_modules, build outputs and install stamps"
	@echo "make help    this list"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

.make-python: $(BIN)/python requirements/dev.lock pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

.make-node: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# checkov pins boto3 exactly (older than ours): it gets a venv of its own.
CHECKOV_VENV := .venv-checkov
.make-checkov: requirements/checkov.lock
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/checkov.lock
	touch $@

.make-dynamodb-local: .make-python
	$(BIN)/python -m workflow_runs_dev.dynamodb_local fetch
	touch $@

.make-chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	touch $@

install: .make-python .make-node .make-dynamodb-local .make-checkov
	@:

# make dev PORT=8100 INTERNAL_PORT=8101 ARGS='--inject-faults conflict=0.2'
PORT ?= 8000
INTERNAL_PORT ?= 8001
ARGS ?=
dev:
	@$(MAKE) --no-print-directory -j3 install
	@$(BIN)/workflow-runs dev --port $(PORT) --internal-port $(INTERNAL_PORT) $(ARGS)

# make cli ARGS='runs list --status failed' (or bin/workflow-runs …, or . .venv/bin/activate)
cli: .make-python
	@$(BIN)/workflow-runs $(ARGS)

# The installs and the static checks run side by side (three jobs: the two venvs, npm, DynamoDB
# Local and chromium do not wait for each other; mypy and ruff start once the venv is there),
# then the tests in two pytest-xdist workers.
test:
	@$(MAKE) --no-print-directory -j3 install .make-chromium typecheck lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder

typecheck: .make-python
	$(BIN)/mypy

# The inner loop, in a few minutes: lint, types and every test that needs no server
# (DynamoDB Local, workflow-runs dev, a browser) and is not slow (tests/conftest.py marks them
# by folder and fixture). The plugins only the fuzz suite uses are not loaded.
CHECK_MARKERS := not dynamodb_local and not server and not browser and not slow
check: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider -p no:schemathesis -p no:hypothesispytest -m "$(CHECK_MARKERS)"

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

soak: install
	SOAK=1 $(BIN)/python -m pytest -q tests/reliability tests/contention

openapi: .make-python
	$(BIN)/python -m workflow_runs_api.openapi > docs/openapi.json

build: .make-python
	$(BIN)/python -m infra.build

# Stage settings without editing a file: CONTEXT="jwtIssuer=https://… jwtAudience=…" (each
# becomes -c KEY=VALUE), WORKFLOW_RUNS_* environment variables, or cdk.context.json.
CONTEXT ?=
synth: .make-python .make-node build
	STAGE=$(STAGE) $(BIN)/python -m infra.app $(foreach c,$(CONTEXT),-c '$(c)')

# What a deploy of STAGE would change (CI runs it on pull requests; needs read access to AWS).
diff: synth
	npx --no-install cdk diff --app cdk.out

DEPLOY_ARGS ?=
deploy: synth
	npx --no-install cdk deploy --app cdk.out --require-approval never $(DEPLOY_ARGS)

# After a deploy: one blocking execute and one streamed execute through the same base URL.
# SMOKE_URL=<the PublicApiUrl output> SMOKE_TOKEN=<a JWT> make smoke (scripts/smoke.py)
smoke: .make-python
	$(BIN)/python -m scripts.smoke

lint: .make-python
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules cdk.out build .make-*
