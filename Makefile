# The two README commands: `make plan` (main job, offline) and `make test` (what CI runs).
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/kiln: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

.PHONY: plan test
plan: $(BIN)/kiln
	$(BIN)/kiln examples
	$(BIN)/kiln plan dev

test: $(BIN)/kiln
	$(BIN)/ruff check .
	$(BIN)/pytest

# Mutation testing of the modules where a bug costs most (docs/testing.md): bounded by the
# mutant count and mutmut's per-mutant timeout, on both cores; not part of `make test`.
.PHONY: mutation
mutation: $(BIN)/kiln
	$(BIN)/mutmut run --max-children 2
	$(BIN)/python -m tests.mutation_report
