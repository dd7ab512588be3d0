"""The real adapter reaches each resource in the subscription its ID names, not only the configured one."""

from __future__ import annotations

import dataclasses

import pytest
from contract_backends import EmulatorBackend, emulator_config

from elasticsan_snapshotter.azure.client import ElasticSanAzure
from elasticsan_snapshotter.domain.errors import NotFound
from elasticsan_snapshotter.domain.identity import ElasticSanId

pytestmark = pytest.mark.integration

OTHER_SUBSCRIPTION = "00000000-0000-0000-0000-0000000b0b0b"
"""A default subscription the emulator does not serve: any call made in it is answered 404."""


async def test_an_adapter_configured_for_another_subscription_follows_the_ids(
    emulator_backend: EmulatorBackend,
) -> None:
    home = emulator_backend
    volume = home.new_volume()
    await home.port.create_volume(volume, 10)
    snapshot = home.new_snapshot(volume)
    await home.port.create_snapshot(snapshot, volume)

    config = dataclasses.replace(emulator_config(home.info), subscription_id=OTHER_SUBSCRIPTION)
    async with ElasticSanAzure(config) as elsewhere:
        assert (await elsewhere.get_snapshot(snapshot)).source_volume == volume
        restored = home.new_volume()
        made = await elsewhere.create_volume(restored, 10, snapshot)
        assert made.source == snapshot
        assert (await home.port.get_volume(restored)).source == snapshot
        await elsewhere.delete_volume(restored, delete_snapshots=False)
        # Its own subscription is still the one unqualified names mean, and the emulator has none.
        with pytest.raises(NotFound):
            await elsewhere.get_elastic_san(ElasticSanId(OTHER_SUBSCRIPTION, "rg", "contract"))
