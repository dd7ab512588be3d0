"""Fixtures for the emulator tests: emulator processes and real SDK clients pointed at them.

One emulator serves a whole module for tests that only need a fresh resource group; tests
that change start-up flags start their own with ``start_emulator``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from emulator_sdk import FAST_FLAGS, StartEmulator, compute_client, credential, elasticsan_client

from elasticsan_snapshotter.emulator.process import EmulatorInfo, EmulatorProcess


@pytest.fixture
def start_emulator(tmp_path: Path) -> Iterator[StartEmulator]:
    """Start emulators with extra flags; every one is stopped (and must exit 0) at the end."""
    started: list[EmulatorProcess] = []

    def start(*extra: str, **kwargs: Any) -> EmulatorProcess:
        process = EmulatorProcess(
            tmp_path / f"emulator-{len(started)}", extra_args=[*FAST_FLAGS, *extra], **kwargs
        )
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.running():
            assert process.stop() == 0


@pytest.fixture(scope="module")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    # Many tests share this emulator, each with its own resource group.
    extra = [*FAST_FLAGS, "--sans-per-region", "1000"]
    process = EmulatorProcess(tmp_path_factory.mktemp("emulator"), extra_args=extra)
    process.start()
    try:
        yield process
    finally:
        assert process.stop() == 0


@pytest.fixture
def emulator(shared_emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    shared_emulator.admin.reset_counters()
    yield shared_emulator
    shared_emulator.admin.clear_faults()


@pytest.fixture
def info(emulator: EmulatorProcess) -> EmulatorInfo:
    return emulator.info


@pytest.fixture
def esan(info: EmulatorInfo) -> Iterator[ElasticSanMgmtClient]:
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        yield client


@pytest.fixture
def compute(info: EmulatorInfo) -> Iterator[ComputeManagementClient]:
    with credential(info) as cred, compute_client(info, cred) as client:
        yield client


@pytest.fixture
def rg() -> str:
    """A resource group of its own per test (the emulator accepts any group name)."""
    return f"rg-{uuid.uuid4().hex[:8]}"
