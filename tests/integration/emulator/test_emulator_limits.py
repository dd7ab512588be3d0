"""Capacity, snapshot limits and quotas, with the errors the emulator documents."""

from __future__ import annotations

import asyncio

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from azure.mgmt.elasticsan.aio import ElasticSanMgmtClient as AsyncElasticSanMgmtClient
from emulator_sdk import (
    POLL,
    StartEmulator,
    async_credential,
    credential,
    elasticsan_client,
    make_layout,
    make_san,
    snapshot_body,
)

from elasticsan_snapshotter.emulator.process import EmulatorInfo, EmulatorProcess

pytestmark = pytest.mark.integration


def _quota_error(error: pytest.ExceptionInfo[ResourceExistsError]) -> str:
    assert error.value.status_code == 409
    assert error.value.error is not None
    return str(error.value.error.code)


def test_volumes_must_fit_the_san(esan: ElasticSanMgmtClient, rg: str) -> None:
    make_layout(esan, rg, size_gib=1000)  # 1 TiB SAN
    esan.volumes.begin_create(rg, "san1", "vg1", "fits", {"properties": {"sizeGiB": 24}}).result()
    with pytest.raises(ResourceExistsError) as full:
        esan.volumes.begin_create(rg, "san1", "vg1", "one-more", {"properties": {"sizeGiB": 1}}).result()
    assert _quota_error(full) == "QuotaExceeded"
    with pytest.raises(ResourceExistsError):
        esan.volumes.begin_update(rg, "san1", "vg1", "fits", {"properties": {"sizeGiB": 25}}).result()
    # Growing the SAN makes room.
    esan.elastic_sans.begin_update(rg, "san1", {"properties": {"extendedCapacitySizeTiB": 1}}).result()
    esan.volumes.begin_create(rg, "san1", "vg1", "one-more", {"properties": {"sizeGiB": 1}}).result()
    with pytest.raises(HttpResponseError) as shrink:
        esan.elastic_sans.begin_update(rg, "san1", {"properties": {"extendedCapacitySizeTiB": 0}}).result()
    assert shrink.value.status_code == 400


def test_snapshots_consume_the_changed_data(
    esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    layout = make_layout(esan, rg, size_gib=1000)  # 24 GiB free
    create = esan.volume_snapshots.begin_create
    create(rg, "san1", "vg1", "first", snapshot_body(layout.volume_id)).result()  # the first takes nothing
    emulator.admin.set_written(layout.volume_id, 20)
    create(rg, "san1", "vg1", "second", snapshot_body(layout.volume_id)).result()  # takes 20, 4 GiB left
    with pytest.raises(ResourceExistsError):
        esan.volumes.begin_create(rg, "san1", "vg1", "small", {"properties": {"sizeGiB": 5}}).result()
    emulator.admin.set_written(layout.volume_id, 10)
    with pytest.raises(ResourceExistsError) as full:
        create(rg, "san1", "vg1", "third", snapshot_body(layout.volume_id)).result()
    assert _quota_error(full) == "QuotaExceeded"
    esan.volume_snapshots.begin_delete(rg, "san1", "vg1", "second").result()  # frees 20
    create(rg, "san1", "vg1", "third", snapshot_body(layout.volume_id)).result()  # takes 10
    # Taking a snapshot resets the written amount, so the next one is free.
    create(rg, "san1", "vg1", "fourth", snapshot_body(layout.volume_id)).result()
    esan.volumes.begin_create(rg, "san1", "vg1", "small", {"properties": {"sizeGiB": 14}}).result()


def test_at_most_seven_new_snapshots_per_volume_in_five_minutes(
    info: EmulatorInfo, esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    layout = make_layout(esan, rg)
    for index in range(7):
        esan.volume_snapshots.begin_create(
            rg, "san1", "vg1", f"s{index}", snapshot_body(layout.volume_id)
        ).result()
    # Without retries: azure-core would otherwise sleep for the Retry-After the emulator sends.
    with (
        credential(info) as cred,
        elasticsan_client(info, cred, retry_total=0) as no_retry,
        pytest.raises(HttpResponseError) as throttled,
    ):
        no_retry.volume_snapshots.begin_create(
            rg, "san1", "vg1", "s7", snapshot_body(layout.volume_id)
        ).result()
    assert throttled.value.status_code == 429
    assert throttled.value.error is not None
    assert throttled.value.error.code == "TooManyRequests"
    assert throttled.value.response is not None
    assert 250 <= int(throttled.value.response.headers["Retry-After"]) <= 300
    # Other volumes have their own budget; deletes do not give budget back.
    other = esan.volumes.begin_create(rg, "san1", "vg1", "vol2", {"properties": {"sizeGiB": 1}}).result()
    assert other.id is not None
    esan.volume_snapshots.begin_create(rg, "san1", "vg1", "o1", snapshot_body(other.id)).result()
    esan.volume_snapshots.begin_delete(rg, "san1", "vg1", "s0").result()
    with (
        credential(info) as cred,
        elasticsan_client(info, cred, retry_total=0) as no_retry,
        pytest.raises(HttpResponseError),
    ):
        no_retry.volume_snapshots.begin_create(
            rg, "san1", "vg1", "s7", snapshot_body(layout.volume_id)
        ).result()


async def test_at_most_200_snapshots_per_volume(start_emulator: StartEmulator) -> None:
    process = start_emulator("--snapshot-rate-limit", "1000")
    info = process.info
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        layout = make_layout(client, "rg")
    async with (
        async_credential(info) as cred,
        AsyncElasticSanMgmtClient(
            cred,
            info.subscription_id,
            base_url=info.endpoint,
            connection_verify=info.ca_cert,
            polling_interval=POLL,
        ) as client,
    ):

        async def take(name: str) -> None:
            poller = await client.volume_snapshots.begin_create(
                "rg", "san1", "vg1", name, snapshot_body(layout.volume_id)
            )
            await poller.result()

        for batch in range(10):
            await asyncio.gather(*[take(f"s{batch}-{index}") for index in range(20)])
        with pytest.raises(ResourceExistsError) as limit:
            await take("one-too-many")
        assert _quota_error(limit) == "QuotaExceeded"
        names = [s.name async for s in client.volume_snapshots.list_by_volume_group("rg", "san1", "vg1")]
        assert len(names) == 200


def test_at_most_five_sans_per_region(start_emulator: StartEmulator) -> None:
    process = start_emulator()
    info = process.info
    with credential(info) as cred, elasticsan_client(info, cred) as client:
        for index in range(5):
            make_san(client, "rg", san=f"san{index}")
        make_san(client, "rg", san="elsewhere", location="eastus")
        with pytest.raises(ResourceExistsError) as limit:
            make_san(client, "rg", san="san5")
    assert _quota_error(limit) == "QuotaExceeded"
