# chaoslab — every target runs `setup` first (idempotent: engine, compose v2, .venv), except
# `plan` and `doctor`: they start nothing and need no engine, only the .venv (`venv`).
NAME ?= transfer-shedder
VENV := .venv
PY := $(VENV)/bin/python
CARGO := $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
AGENT_TARGET := build/agent-target
CHAOSLAB := $(VENV)/bin/chaoslab
SETUP ?= bash scripts/setup.sh
export PICO_VMS NANO_VMS PULSAR_FROM PULSAR_TO RABBITMQ_NODES

# Exit codes through make. GNU make itself exits 2 for any failed recipe, so `make experiment`
# could not tell FAIL (chaoslab's 1) from a broken lab (2). When the only goal is `experiment` or
# `gate` (and make was not asked for a dry run), make runs in question mode (-q): recipe lines
# marked `+` still run, and make then exits 0 when chaoslab said 0, 1 when it said 1 and 2 for
# anything else. An interrupted run (chaoslab's 130) is passed on by interrupting make itself,
# which then exits 130 as well. tests/unit/test_make_exit_codes.py checks all four.
VERDICT_GOALS := experiment gate
ifneq ($(and $(filter 1,$(words $(MAKECMDGOALS))),$(filter $(VERDICT_GOALS),$(MAKECMDGOALS))),)
ifeq ($(findstring n,$(firstword -$(MAKEFLAGS))),)
MAKEFLAGS += -q
RUN := +
endif
endif
# chaoslab's own exit code becomes make's (see above): 130 interrupts make so that it exits 130
pass_code = rc=$$?; if [ $$rc -eq 130 ]; then kill -INT $$PPID; fi; exit $$rc

.PHONY: setup venv test unit integration up down status build experiment plan doctor gate bench bench-experiment

setup:
	$(RUN)@$(SETUP)

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

# every image the lab needs, with class-data sharing trained into the Pulsar images (a machine that
# keeps its images: each later JVM start is faster; a cold start does without)
build: setup
	$(CHAOSLAB) build --cds

down: setup
	$(CHAOSLAB) down

status: setup
	$(CHAOSLAB) status

experiment: setup
	$(RUN)$(CHAOSLAB) experiment experiments/$(NAME).yaml $(ARGS); $(pass_code)

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
	$(RUN)$(CHAOSLAB) gate $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO)) $(if $(BROKER_CONF),--broker-conf $(BROKER_CONF)) $(ARGS); $(pass_code)

bench: setup
	$(PY) bench/lab_bench.py

bench-experiment: setup
	$(PY) bench/experiment_bench.py experiments/$(NAME).yaml
