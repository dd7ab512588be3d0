# Verb-style targets. `make test` is the one command that runs every check and test
# (it is what CI runs); `make cluster` brings up the local control plane for a person.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: test lint binaries velero cluster install stubs demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

binaries:
	$(PYTHON) hack/build_binaries.py

# Velero and its AWS object-store plugin, for the backup and restore tests only.
velero:
	$(PYTHON) hack/build_binaries.py --only velero --only velero-plugin-for-aws

# gRPC stubs for CSI, generated from the pinned csi.proto in the Go module cache (never committed).
stubs: install
	$(BIN)/python hack/generate_csi_stubs.py

lint: install stubs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint binaries velero
	$(BIN)/pytest -v -p no:cacheprovider --durations=20 $(PYTEST_ARGS)

cluster: install binaries
	$(BIN)/python -m elasticsan_snapshotter.local_cluster

# The first five minutes: control plane, emulator, operator, snapshot, restore and export, then clean up.
demo: install binaries
	$(BIN)/elasticsan-snapshotter demo
