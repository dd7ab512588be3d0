"""Fixtures of the CSI unit tests: an InMemoryAzure with one SAN and volume group, and the plugin serving it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from csi_plugin import Plugin, running, seeded

from elasticsan_snapshotter.azure.fake import InMemoryAzure


@pytest.fixture
def azure() -> InMemoryAzure:
    return seeded(InMemoryAzure())


@pytest.fixture
async def plugin(azure: InMemoryAzure) -> AsyncIterator[Plugin]:
    async with running(azure) as served:
        yield served
