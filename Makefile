# chaoslab — every target runs `setup` first (idempotent: engine, compose v2, .venv), except
# `plan` and `doctor`: they start nothing and need no engine, only the .venv (`venv`).
NAME ?= transfer-shedder
VENV := .venv
PY := $(VENV)/bin/python
CARGO := $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
AGENT_TARGET := build/agent-target
CHAOSLAB := $(VENV)/bin/chaoslab
export PICO_VMS NANO_VMS PULSAR_FROM PULSAR_TO RABBITMQ_NODES

.PHONY: setup venv test unit integration up down status experiment plan doctor gate bench bench-experiment

setup:
	@bash scripts/setup.sh

# The Rust agent's tests, unit tests, then integration tests against a real lab (brought up and
# removed by the fixture).
test: setup
	$(CARGO) test --locked --quiet --manifest-path agent/Cargo.toml --target-dir $(AGENT_TARGET)
	$(PY) -m pytest -q tests/unit tests/integration

unit: setup
	$(CARGO) test --locked --quiet --manifest-path agent/Cargo.toml --target-dir $(AGENT_TARGET)
	$(PY) -m pytest -q tests/unit

integration: setup
	$(PY) -m pytest -q tests/integration

# RABBITMQ_NODES=3 make up (a 3-node cluster), NO_PULSAR=1 make up (RabbitMQ only)
up: setup
	$(CHAOSLAB) up $(if $(NO_PULSAR),--no-pulsar)

down: setup
	$(CHAOSLAB) down

status: setup
	$(CHAOSLAB) status

experiment: setup
	$(CHAOSLAB) experiment experiments/$(NAME).yaml

# The .venv alone (what `setup` makes last), for the commands that need no engine.
venv:
	@test -x $(CHAOSLAB) || { python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[test]'; }

# A dry run: make plan NAME=transfer-shedder (OFFLINE=1: Maven is not asked)
plan: venv
	$(CHAOSLAB) plan experiments/$(NAME).yaml $(if $(OFFLINE),--offline)

# Can this machine run the lab? (exit 2 when not; FILES="experiments/a.yaml ..." checks their releases)
doctor: venv
	$(CHAOSLAB) doctor $(FILES)

# Pre-upgrade gate: make gate TO=3.2.3 BROKER_CONF=my-change.conf  (exit 0 safe, 1 unsafe, 2 lab error)
gate: setup
	$(CHAOSLAB) gate $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO)) $(if $(BROKER_CONF),--broker-conf $(BROKER_CONF))

bench: setup
	$(PY) bench/lab_bench.py

bench-experiment: setup
	$(PY) bench/experiment_bench.py experiments/$(NAME).yaml
