"""Fixtures for the install tests: the pinned helm and kubectl, and the emulator the demo seeds."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from install_support import Tools

from elasticsan_snapshotter.demo import DemoSan
from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster import Artifacts


@pytest.fixture(scope="session")
def tools(artifacts: Artifacts) -> Tools:
    return Tools(artifacts.binary("helm"), artifacts.binary("kubectl"))


@pytest.fixture(scope="module")
def demo_san() -> DemoSan:
    return DemoSan()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, demo_san: DemoSan) -> Iterator[EmulatorProcess]:
    state = tmp_path_factory.mktemp("emulator")
    seed = state / "seed.json"
    seed.write_text(json.dumps(demo_san.seed()))
    process = EmulatorProcess(
        state / "state", seed=seed, extra_args=("--lro-retry-after", "0", "--export-seconds", "2")
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
