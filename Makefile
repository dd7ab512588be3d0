# Verb-style targets. `make test` is the one command that runs every check and test
# (it is what CI runs); `make cluster` brings up the local control plane for a person.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: test test-fast lint binaries velero cluster install stubs demo bench bench-quick bench-freeze bench-schedules

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

# gRPC stubs for CSI, generated from the pinned csi.proto in the Go module cache, and for the
# freeze agent from our own freeze.proto (never committed).
stubs: install
	$(BIN)/python hack/generate_csi_stubs.py
	$(BIN)/python hack/generate_freeze_stubs.py

lint: install stubs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Coverage of domain/, azure/ and kubernetes/ (pyproject.toml [tool.coverage]) is printed at the end.
test: lint binaries velero
	$(MAKE) bench-quick
	$(BIN)/pytest -v -p no:cacheprovider --durations=20 --cov --cov-report=term $(PYTEST_ARGS)

# Operator against csi-snapshotter + our CSI controller, side by side (docs/performance.md).
# `bench` enforces the targets (non-zero exit when one is missed); `bench-quick` is the smoke
# run that `make test` starts with: a few minutes, figures printed, targets not enforced.
# Both arms run from .venv-runtime: the package with its runtime dependencies only, as in the image.
BENCH_ARGS ?=
RUNTIME_VENV := .venv-runtime
$(RUNTIME_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/pip install --quiet -e .
	touch $@

bench: install stubs binaries $(RUNTIME_VENV)/.installed
	$(BIN)/python hack/bench.py --python $(RUNTIME_VENV)/bin/python --json bench-results.json $(BENCH_ARGS)

bench-quick: install stubs binaries $(RUNTIME_VENV)/.installed
	$(BIN)/python hack/bench.py --quick --python $(RUNTIME_VENV)/bin/python --json bench-quick.json $(BENCH_ARGS)

# The edit loop: lint, unit tests and the Azure port contract (the fake and the emulator; no control plane).
test-fast: lint
	$(BIN)/pytest -q -p no:cacheprovider tests/unit tests/contract $(PYTEST_ARGS)

cluster: install binaries
	$(BIN)/python -m elasticsan_snapshotter.local_cluster

# The first five minutes: control plane, emulator, operator, snapshot, restore and export, then clean up.
# The gRPC stubs too, so that nothing it runs depends on an earlier `make stubs`.
demo: install stubs binaries
	$(BIN)/elasticsan-snapshotter demo

# The freeze window of FilesystemConsistent groups (2, 5, 10 members; 0 and 200 ms cuts); root and loop devices.
bench-freeze: install stubs
	$(BIN)/python hack/bench_freeze.py

# Scheduler overhead: one tick of an hourly schedule over 1,000 claims, in process.
bench-schedules: install
	$(BIN)/python hack/bench_schedules.py
