# zonewatch — local development targets (CONTRACT §8). No Docker needed: `make up` runs Kafka (KRaft,
# jars from Maven Central) and Redis as plain processes on 127.0.0.1 via deploy/stack.py.
#
#   make setup   .venv with the project and its test extras (re-run when pyproject.toml changes)
#   make up      Kafka on 127.0.0.1:$(KAFKA_PORT), Redis on 127.0.0.1:$(REDIS_PORT) (state in $(STACK_DIR))
#   make down    stop them (data kept; `make down WIPE=1` deletes it)
#   make status  what is running
#   make test    the whole test suite; integration tests start their own stack on 19092/16379
#   make demo    the stack + the bundled demo;  make bench  the stack + the benchmark
#   make chaos   crash/restart scenarios vs a clean run;  make soak DURATION=1800  long city-scale load
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
.PHONY: help setup up down status test demo bench chaos soak clean

help:
	@sed -n '1,13s/^# \{0,1\}//p' Makefile

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --disable-pip-version-check --progress-bar off -e '.[test]'
	touch $(STAMP)

up:
	$(STACK) up $(STACK_ARGS)

down:
	$(STACK) down --dir $(STACK_DIR) $(if $(WIPE),--wipe)

status:
	$(STACK) status --dir $(STACK_DIR)

test: setup
	bash deploy/install-browser.sh
	$(VPY) -m pytest -v tests

# demo and bench talk to the stack `make up` started (an explicit ZONEWATCH_* in the environment wins)
demo bench: export ZONEWATCH_KAFKA ?= 127.0.0.1:$(KAFKA_PORT)
demo bench: export ZONEWATCH_REDIS ?= redis://127.0.0.1:$(REDIS_PORT)/0

demo: setup up
	$(VPY) -m zonewatch.demo

bench: setup up
	$(VPY) -m bench.run

# kill -9 / broker restart / Redis restart and flush during a replay, on a stack of its own (29092/26379)
chaos: setup
	$(VPY) -m bench.chaos

# city-scale live load for DURATION seconds (default 1800): RSS and e2e p50/p99 per 5 minutes
DURATION ?= 1800
soak: export ZONEWATCH_KAFKA ?= 127.0.0.1:$(KAFKA_PORT)
soak: export ZONEWATCH_REDIS ?= redis://127.0.0.1:$(REDIS_PORT)/0
soak: setup up
	$(VPY) -m bench.soak --duration $(DURATION)

clean:
	@if [ -d .stack ]; then \
	  for d in $$(find .stack -name stack.json -printf '%h\n' -o -name '*.pid' -printf '%h\n' | sort -u); do \
	    $(STACK) down --dir "$$d"; \
	  done; \
	fi
	rm -rf $(VENV) .stack build *.egg-info .pytest_cache .hypothesis test-artifacts
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
