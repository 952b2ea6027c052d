PY ?= python3
NAME ?= transfer-shedder

.PHONY: setup test unit up down experiment

# Idempotent: engine + compose v2 + .venv with the package (scripts/setup.sh).
setup:
	bash scripts/setup.sh

# Work in progress: only unit tests exist so far (README, "Status").
test: unit
unit:
	$(PY) -m pytest -q tests/unit

# Not built yet. These fail loudly rather than pretend (README, "Status").
up down: setup
	@echo "chaoslab: 'make $@' is not built yet: the lab lifecycle (issue 2) is in progress" >&2; exit 2

experiment: setup
	@test -f experiments/$(NAME).yaml || { echo "chaoslab: no experiment file experiments/$(NAME).yaml" >&2; exit 2; }
	@echo "chaoslab: the experiment runner is not built yet (issues 2-3 in progress)" >&2; exit 2
