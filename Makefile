PY ?= python3

.PHONY: test unit
# Work in progress: only the unit tests exist so far (see README, "Status").
test: unit
unit:
	$(PY) -m pytest -q tests/unit
