"""The asynchronous clients (azure.mgmt.*.aio, azure.identity.aio), as the operator uses them."""

from __future__ import annotations

import asyncio

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.elasticsan.aio import ElasticSanMgmtClient
from azure.mgmt.elasticsan.models import ProvisioningStates, XMsDeleteSnapshots
from emulator_sdk import LOCATION, POLL, async_credential, export_body, snapshot_body

from elasticsan_snapshotter.emulator.process import EmulatorInfo, EmulatorProcess

pytestmark = pytest.mark.integration


async def test_async_elasticsan_and_export(info: EmulatorInfo, rg: str, emulator: EmulatorProcess) -> None:
    async with (
        async_credential(info) as cred,
        ElasticSanMgmtClient(
            cred,
            info.subscription_id,
            base_url=info.endpoint,
            connection_verify=info.ca_cert,
            polling_interval=POLL,
        ) as esan,
        ComputeManagementClient(
            cred,
            info.subscription_id,
            base_url=info.endpoint,
            connection_verify=info.ca_cert,
            polling_interval=POLL,
        ) as compute,
    ):
        poller = await esan.elastic_sans.begin_create(
            rg,
            "san1",
            {
                "location": LOCATION,
                "properties": {
                    "sku": {"name": "Premium_LRS"},
                    "baseSizeTiB": 1,
                    "extendedCapacitySizeTiB": 0,
                },
            },
        )
        san = await poller.result()
        assert san.provisioning_state == ProvisioningStates.SUCCEEDED
        await (await esan.volume_groups.begin_create(rg, "san1", "vg1", {})).result()
        patched = await (
            await esan.volume_groups.begin_update(
                rg, "san1", "vg1", {"properties": {"protocolType": "Iscsi"}}
            )
        ).result()
        assert patched.protocol_type == "Iscsi"
        assert [g.name async for g in esan.volume_groups.list_by_elastic_san(rg, "san1")] == ["vg1"]
        assert (await esan.volume_groups.get(rg, "san1", "vg1")).name == "vg1"
        await (await esan.elastic_sans.begin_update(rg, "san1", {"properties": {"baseSizeTiB": 2}})).result()
        assert (await esan.elastic_sans.get(rg, "san1")).total_iops == 10000

        # Concurrent creates, as several Kopf handlers would issue them.
        volumes = await asyncio.gather(
            *[
                (
                    await esan.volumes.begin_create(
                        rg, "san1", "vg1", f"vol{i}", {"properties": {"sizeGiB": 2}}
                    )
                ).result()
                for i in range(3)
            ]
        )
        assert sorted(v.name or "" for v in volumes) == ["vol0", "vol1", "vol2"]
        await (
            await esan.volumes.begin_update(rg, "san1", "vg1", "vol0", {"properties": {"sizeGiB": 3}})
        ).result()
        assert (await esan.volumes.get(rg, "san1", "vg1", "vol0")).size_gi_b == 3
        listed = [v.name async for v in esan.volumes.list_by_volume_group(rg, "san1", "vg1")]
        assert listed == ["vol0", "vol1", "vol2"]

        volume_id = volumes[0].id
        assert volume_id is not None
        snapshot = await (
            await esan.volume_snapshots.begin_create(rg, "san1", "vg1", "snap1", snapshot_body(volume_id))
        ).result()
        assert snapshot.id is not None
        assert (await esan.volume_snapshots.get(rg, "san1", "vg1", "snap1")).volume_name == "vol0"
        found = [
            s.name
            async for s in esan.volume_snapshots.list_by_volume_group(
                rg, "san1", "vg1", filter="volumeName eq vol0"
            )
        ]
        assert found == ["snap1"]

        exported = await (
            await compute.snapshots.begin_create_or_update(rg, "export1", export_body(snapshot.id))
        ).result()
        assert exported.provisioning_state == "Succeeded"
        assert (
            await compute.snapshots.get(rg, "export1")
        ).creation_data.elastic_san_resource_id == snapshot.id
        await (await compute.snapshots.begin_delete(rg, "export1")).result()
        with pytest.raises(ResourceNotFoundError):
            await compute.snapshots.get(rg, "export1")

        await (await esan.volume_snapshots.begin_delete(rg, "san1", "vg1", "snap1")).result()
        for name in ("vol0", "vol1", "vol2"):
            await (
                await esan.volumes.begin_delete(
                    rg, "san1", "vg1", name, x_ms_delete_snapshots=XMsDeleteSnapshots.TRUE
                )
            ).result()
        await (await esan.volume_groups.begin_delete(rg, "san1", "vg1")).result()
        await (await esan.elastic_sans.begin_delete(rg, "san1")).result()
        assert [s.name async for s in esan.elastic_sans.list_by_resource_group(rg)] == []

    assert emulator.admin.count(method="PUT", kind="volumes", status=201) == 3
    assert emulator.admin.count(method="PUT", kind="diskSnapshots", status=202) == 1
