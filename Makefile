# Targets a newcomer can guess. The README and .ci/run call these, nothing else.
# Every target installs what it needs into .venv (python3.13, the Lambda runtime)
# and .venv-sam (the SAM CLI, kept apart: it pins boto3 and cfn-lint narrowly).
# `make` alone (or `make help`) lists the targets: each one's `## target: what` line.

SHELL := /bin/bash
# A real interpreter, not a pyenv shim (a shim put first on PATH re-enters itself).
PYTHON313 ?= $(shell ls -d $$HOME/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | tail -n 1 | grep . || command -v python3.13)
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
# checkov pins many packages (and its own boto3): a venv of its own too.
SCAN_VENV := .venv-scan
CHECKOV := $(SCAN_VENV)/bin/checkov
SAM := $(SAM_VENV)/bin/sam
# sam build looks for python3.13 on PATH
export PATH := $(dir $(PYTHON313)):$(PATH)
export SAM_CLI_TELEMETRY := 0
export PYTHONPATH := $(CURDIR)/layers/common:$(CURDIR)
PORT ?= 3000

.DEFAULT_GOAL := help
.PHONY: help check-python install install-sam install-scan scan load run send test test-fast lint format validate build deploy bench bench-listing events clean admin soak

## help: this list
help:
	@sed -nE 's/^## ([a-z-]+): (.*)/\1\t\2/p' $(firstword $(MAKEFILE_LIST)) | sed 's/$$(PORT)/$(PORT)/' | expand -t 14

# Installs go through uv (pinned, installed with pip into .venv first): it resolves and
# installs the dev dependencies in seconds where pip takes a minute or two, which is
# most of `make run`'s time on a fresh clone.
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
## check-python: fail early, with a hint, when no python3.13 is found
check-python:
	@test -n "$(PYTHON313)" || { echo "python3.13 not found (pyenv install 3.13, or set PYTHON313=...)"; exit 1; }

$(UV): | check-python
	$(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION)

$(VENV)/.installed: requirements-dev.txt layers/common/requirements.txt | $(UV)
	$(UV) pip install -q --compile-bytecode --python $(PY) -r requirements-dev.txt
	touch $@

## install: .venv with the dev dependencies (python3.13, through uv)
install: $(VENV)/.installed

$(SAM_VENV)/.installed: $(VENV)/.installed
	$(PYTHON313) -m venv $(SAM_VENV)
	$(UV) pip install -q --python $(SAM_VENV)/bin/python aws-sam-cli==1.170.0
	touch $@

## install-sam: .venv-sam with the SAM CLI
install-sam: $(SAM_VENV)/.installed

$(SCAN_VENV)/.installed: $(VENV)/.installed
	$(PYTHON313) -m venv $(SCAN_VENV)
	$(UV) pip install -q --python $(SCAN_VENV)/bin/python checkov==3.3.30
	touch $@

## install-scan: .venv-scan with checkov
install-scan: $(SCAN_VENV)/.installed

## run: the whole flow on this machine (moto, HTTP API on :$(PORT), consumer); ARGS="--param X=1 ..." passes options
# The ready file tells `make aws` and `admin_cli --local` where this stack's moto is.
run: install
	@mkdir -p .local-stack
	$(PY) -m devtools.local_stack --port $(PORT) --ready-file $(CURDIR)/.local-stack/stack-$(PORT).json $(ARGS)

## send: sign and post a sample event to the local stack (TYPE=workorder.created FORMAT=maintainx ARGS="--duplicate")
send: install
	$(PY) -m devtools.send --url http://127.0.0.1:$(PORT)/webhooks/maintainx --type $(or $(TYPE),workorder.created) --format $(or $(FORMAT),maintainx) $(ARGS)

## admin: the admin CLI (ARGS="list --status FAILED"); add --local for the stack `make run` started
admin: install
	@$(PY) -m devtools.admin_cli $(ARGS)

## aws: the AWS CLI against the stack `make run` started (ARGS="dynamodb list-tables"): its endpoint, region, fake keys
.PHONY: aws
aws: install
	@ready=.local-stack/stack-$(PORT).json; \
	test -f $$ready || { echo "no local stack on port $(PORT) ($$ready): start one with make run" >&2; exit 1; }; \
	command -v aws >/dev/null || { echo "the AWS CLI is not installed (pip install awscli)" >&2; exit 1; }; \
	read -r endpoint region < <($(PY) -c 'import json, sys; i = json.load(open(sys.argv[1])); print(i["endpoint_url"], i["region"])' $$ready); \
	env -u AWS_PROFILE -u AWS_SESSION_TOKEN AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=$$region \
		aws --endpoint-url $$endpoint --region $$region $(ARGS)

## test: everything CI runs: lint, template checks, sam build, all test tiers
# The tiers run in TEST_WORKERS processes (pytest-xdist), each test file in one of them: most
# of the suite waits on sockets, subprocesses and Docker, so 3 workers on 2 cores halve the
# wall time. TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 3
test: install install-sam lint validate scan build install-browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

## console: the operator console on http://127.0.0.1:8080 for the stack `make run` started; STACK=<name>: a deployed one
# It talks to the admin API (a deployed one SigV4-signed with your AWS credentials); CONSOLE_PORT=... moves it.
.PHONY: console
console: install
	$(PY) -m devtools.operator_console --local-port $(PORT) $(if $(STACK),--stack $(STACK)) $(if $(CONSOLE_PORT),--port $(CONSOLE_PORT))

## install-browser: Debian's chromium for the browser tests (tests/browser); nothing to do when /usr/bin/chromium exists
.PHONY: install-browser
install-browser:
	@test -x /usr/bin/chromium || { \
		sudo=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends chromium; }

## load: the load test at full size on the local stack (LOSSY=1: with lost DynamoDB replies and duplicate deliveries)
# CI runs it at 500 within `make test`, clean and lossy. LOSSY=1: 2% of DynamoDB writes applied with their
# reply lost, 5% duplicate SQS deliveries; CHAOS=dynamodb-lost-replies=...,sqs-duplicates=... and SEED=...
# change them.
load: install
	LOAD_LOSSY=$(if $(filter 1,$(LOSSY)),1,0) $(if $(CHAOS),LOAD_CHAOS=$(CHAOS)) $(if $(SEED),LOAD_CHAOS_SEED=$(SEED)) \
	LOAD_DELIVERIES=$(or $(DELIVERIES),5000) LOAD_TIMEOUT_S=$(or $(LOAD_TIMEOUT_S),2400) $(PY) -m pytest -q -s -m load tests/load

## soak: the state-machine simulation (tests/sim) for as long as asked: MINUTES=10 (default), or STEPS=N; SEED=S to reproduce
soak: install
	$(PY) -m devtools.soak $(if $(STEPS),--steps $(STEPS),--minutes $(or $(MINUTES),10)) $(if $(SEED),--seed $(SEED))

## test-samlocal: the sam local tier alone: the functions in Docker against the local stack (root; installs docker.io)
# `make test` runs it with the rest. It starts a dockerd of its own in a network namespace of its own
# and builds the stand-in Lambda image with ../shared/tools/lambda-python-image.sh (tests/samlocal).
.PHONY: test-samlocal
test-samlocal: install install-sam build
	$(PY) -m pytest -q tests/samlocal

## test-fast: unit and integration tests only
test-fast: install
	$(PY) -m pytest -q tests/unit tests/integration

## lint: ruff (lint and format check) and mypy
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

## format: ruff format, then ruff's safe fixes
format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

## scan: checkov on template.yaml, no failed check allowed (skips and their reasons: .checkov.yaml)
# Checks skipped for every resource of a kind are in .checkov.yaml, one resource's own
# in the template (Metadata.checkov.skip); each with its reason.
scan: install install-scan
	$(CHECKOV) --config-file .checkov.yaml

## validate: sam validate --lint (cfn-lint, once per `make test`, SAM transform included)
validate: install install-sam
	$(SAM) validate --lint

## build: sam build (the layer and functions with compiled bytecode: layers/common/Makefile, functions/Makefile)
# Plain `sam build` does it all (BuildMethod: makefile), so `sam sync`, `sam build --use-container`
# and a user following SAM's docs ship the same bytecode; it looks for python3.13 on PATH (set above).
build: install-sam
	$(SAM) build

## deploy: sam deploy (CONFIG_ENV=dev|prod from samconfig.toml, else --guided)
deploy: build
	$(SAM) deploy $(if $(CONFIG_ENV),--config-env $(CONFIG_ENV),--guided)

## events: the sample ingest events signed now, in .local-stack/events/ingest/ (events/ stays as committed)
events: install
	$(PY) -m devtools.sample_events --sign

## bench: cold start, per-request cost, throughput, as ratios to a baseline; writes docs/benchmarks.md
bench: install install-sam build
	$(PY) -m devtools.bench

## bench-listing: the admin listings on 5,000 events: the local stack's moto against plain moto, as ratios (EVENTS=N)
bench-listing: install
	$(PY) -m devtools.bench.listing --events $(or $(EVENTS),5000)

## clean: remove the build output and the tools' caches
clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
