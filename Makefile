# The two README commands: `make plan` (main job, offline) and `make test` (what CI runs).
VENV := .venv
BIN := $(VENV)/bin
# Every package of the tool's environment at an exact version (README "Reproducible installs");
# `make lock` refreshes it.
LOCK := requirements.lock
# Where the lock resolves for: the Python and platform CI and the images run.
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
# apt-get needs root; elsewhere it goes through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/kiln: pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $@

.PHONY: plan test lock chromium
plan: $(BIN)/kiln
	$(BIN)/kiln examples
	$(BIN)/kiln plan dev

test: $(BIN)/kiln chromium
	$(BIN)/ruff check .
	$(BIN)/pytest

# Re-resolve every dependency (pyproject.toml's ranges, all extras) to the newest versions that
# satisfy them; review the diff, run `make test`, commit. runtime/requirements.txt's exact pins
# follow by hand (tests/test_lock.py says which disagree).
lock: $(BIN)/kiln
	$(BIN)/uv pip compile pyproject.toml --all-extras $(LOCK_TARGET) --upgrade --custom-compile-command 'make lock' -o $(LOCK)

# The review HTML layout tests (tests/infra/review/test_review_render.py) measure the report
# in headless Chromium: Debian's package, installed once when missing.
chromium:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium)

# Mutation testing of the modules where a bug costs most (docs/testing.md): bounded by the
# mutant count and mutmut's per-mutant timeout, on both cores; not part of `make test`.
.PHONY: mutation
mutation: $(BIN)/kiln
	$(BIN)/mutmut run --max-children 2
	$(BIN)/python -m tests.mutation_report
