"""Fixtures of the Azure port contract suite: the session's emulator and the two backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from contract_backends import Backend, EmulatorBackend, FakeBackend, start_emulator

from elasticsan_snapshotter.emulator.process import EmulatorProcess


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    process = start_emulator(tmp_path_factory.mktemp("contract-emulator"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(
    params=[
        pytest.param("fake", marks=pytest.mark.unit),
        pytest.param("emulator", marks=pytest.mark.integration),
    ]
)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "fake":
        yield FakeBackend()
        return
    chosen = EmulatorBackend(request.getfixturevalue("emulator"))
    await chosen.admin_call("clear_faults")
    await chosen.admin_call("reset_counters")
    try:
        yield chosen
    finally:
        await chosen.close()


@pytest.fixture
async def emulator_backend(emulator: EmulatorProcess) -> AsyncIterator[EmulatorBackend]:
    """For the tests that only make sense over HTTP (exact request counts, dropped connections)."""
    chosen = EmulatorBackend(emulator)
    await chosen.admin_call("clear_faults")
    await chosen.admin_call("reset_counters")
    try:
        yield chosen
    finally:
        await chosen.close()
