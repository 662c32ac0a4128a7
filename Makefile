# zonewatch — local development targets (CONTRACT §8). No Docker needed: `make up` runs Kafka (KRaft,
# jars from Maven Central) and Redis as plain processes on 127.0.0.1 via deploy/stack.py.
#
#   make setup   .venv from requirements.lock (pinned, with the test extras) + the project in editable mode
#   make lock    regenerate requirements.lock after editing pyproject.toml's dependencies (uv)
#   make lint    ruff + mypy (configured in pyproject.toml); reports findings per package, fails on any
#   make schemas docs/schemas/*.json and docs/asyncapi.yaml from contract/schemas.py (commit them)
#   make tools   build Prometheus, promtool, kustomize and the manifest checks into .stack/tools
#   make up      Kafka on 127.0.0.1:$(KAFKA_PORT), Redis on 127.0.0.1:$(REDIS_PORT) (state in $(STACK_DIR))
#   make down    stop them (data kept; `make down WIPE=1` deletes it)
#   make status  what is running
#   make test    `make lint`, then the whole test suite; integration tests start their own stack on 19092/16379
#   make demo    the stack + the bundled demo
#   make bench   the stack + the benchmark: 5 runs, demo + city zones (RUNS=1 ZONES=city STRESS=1 SCALING=1 PROFILE=1;
#                PLAN=marathon: the duty plan's cost per event, in-process)
#   make chaos   crash/restart scenarios vs a clean run, a duty plan loaded (BOUNDS=contract; NO_PLAN=1)
#   make soak    two hours at 5x a district (DURATION=7200 SPEED=5; SPLIT=1: ingest and state processes)
#   make failover  kill -9 a worker with 0.2 M / 1 M / 5 M events behind it: seconds until the wall is current
#   make clean   stop every stack under .stack and delete .venv, .stack and build leftovers

SHELL       := /bin/bash
PYTHON      ?= python3
VENV        := .venv
VPY         := $(VENV)/bin/python
STAMP       := $(VENV)/.stamp
STACK       := $(PYTHON) deploy/stack.py
KAFKA_PORT  ?= 9092
REDIS_PORT  ?= 6379
STACK_DIR   ?= .stack
STACK_ARGS  := --kafka-port $(KAFKA_PORT) --redis-port $(REDIS_PORT) --dir $(STACK_DIR)

.DEFAULT_GOAL := help
UV_VERSION  := 0.13.8
TOOLS       := $(PYTHON) deploy/tools.py

.PHONY: help setup lock lint schemas tools up down status test demo bench chaos soak failover clean

help:
	@sed -n '1,19s/^# \{0,1\}//p' Makefile

setup: $(STAMP)

# the lock pins every transitive dependency (Faust's included); the project itself goes on top, editable
$(STAMP): pyproject.toml requirements.lock
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --disable-pip-version-check --progress-bar off -r requirements.lock
	$(VPY) -m pip install --disable-pip-version-check --progress-bar off --no-deps -e .
	touch $(STAMP)

lock:
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --disable-pip-version-check --progress-bar off -q uv==$(UV_VERSION)
	$(VPY) -m uv pip compile pyproject.toml --extra test --python-version 3.11 -o requirements.lock

# ruff then mypy (pyproject.toml); both always run with a count per package; fails on any finding
lint: setup
	@rc=0; \
	out=$$($(VPY) -m ruff check --output-format concise . 2>&1) || rc=1; echo "$$out"; \
	echo "== ruff findings per package:"; echo "$$out" | grep -E '^[^ :]+\.py:[0-9]+' | cut -d/ -f1 | sort | uniq -c; \
	out=$$($(VPY) -m mypy 2>&1) || rc=1; echo "$$out"; \
	echo "== mypy errors per package:"; echo "$$out" | grep -E '^[^ :]+\.py:[0-9]+: error' | cut -d/ -f1 | sort | uniq -c; \
	exit $$rc

# the contract's schemas as files; the zone-events struct (streams/records.py) is passed in here, as
# contract/ imports nothing of the project. tests/unit/contract/test_schemas.py fails when the committed
# files are stale.
schemas: setup
	$(VPY) -c 'from contract import schemas; from streams import records; \
	  print("\n".join(schemas.write("docs", zone_events=records.Batch)) or "docs/schemas: up to date")'

tools:
	$(TOOLS) ensure

up:
	$(STACK) up $(STACK_ARGS)

down:
	$(STACK) down --dir $(STACK_DIR) $(if $(WIPE),--wipe)

status:
	$(STACK) status --dir $(STACK_DIR)

# lint first: a finding fails the run before the (long) suite starts
test: setup lint
	bash deploy/install-browser.sh
	$(VPY) -m pytest -v tests

# demo and bench talk to the stack `make up` started (an explicit ZONEWATCH_* in the environment wins)
demo bench: export ZONEWATCH_KAFKA ?= 127.0.0.1:$(KAFKA_PORT)
demo bench: export ZONEWATCH_REDIS ?= redis://127.0.0.1:$(REDIS_PORT)/0

demo: setup up
	$(VPY) -m zonewatch.demo

# five runs on both zone sets by default (~30-40 min); RUNS=1 for a quick look, ZONES=demo|city,
# STRESS=1 (units jump anywhere), SCALING=1 (1 vs 2 workers), PROFILE=1 (py-spy flame graphs in docs/profiles).
# PLAN=marathon instead: the duty plan's and coverage's CPU per event, in-process (bench/pipeline_cost.py
# --duty; no stack, ~5 min)
RUNS  ?= 5
ZONES ?= demo,city
bench: setup $(if $(PLAN),,up)
ifdef PLAN
	$(VPY) -m bench.pipeline_cost --partitions 4 --duty $(PLAN)
else
	$(VPY) -m bench.run --runs $(RUNS) --zones $(ZONES) $(if $(STRESS),--stress) $(if $(SCALING),--scaling) \
	  $(if $(PROFILE),--profile)
endif

failover: export ZONEWATCH_KAFKA ?= 127.0.0.1:$(KAFKA_PORT)
failover: export ZONEWATCH_REDIS ?= redis://127.0.0.1:$(REDIS_PORT)/0
failover: setup up
	$(VPY) -m bench.failover $(if $(EVENTS),--events $(EVENTS))

# kill -9 / broker restart / Redis restart and flush during a replay, on a stack of its own (29092/26379;
# ZONEWATCH_CHAOS_KAFKA_PORT / ZONEWATCH_CHAOS_REDIS_PORT), with a duty plan loaded (NO_PLAN=1: without)
chaos: setup
	$(VPY) -m bench.chaos $(if $(BOUNDS),--bounds $(BOUNDS)) $(if $(NO_PLAN),--no-plan)

# district-scale live load at SPEED x real time for DURATION seconds: RSS and e2e p50/p99 per 10 minutes
DURATION ?= 7200
soak: export ZONEWATCH_KAFKA ?= 127.0.0.1:$(KAFKA_PORT)
soak: export ZONEWATCH_REDIS ?= redis://127.0.0.1:$(REDIS_PORT)/0
soak: setup up
	$(VPY) -m bench.soak --duration $(DURATION) $(if $(SPLIT),--split)

clean:
	@if [ -d .stack ]; then \
	  for d in $$(find .stack -name stack.json -printf '%h\n' -o -name '*.pid' -printf '%h\n' | sort -u); do \
	    $(STACK) down --dir "$$d"; \
	  done; \
	fi
	rm -rf $(VENV) .stack build *.egg-info .pytest_cache .hypothesis test-artifacts
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
