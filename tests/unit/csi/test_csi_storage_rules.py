"""CreateVolume plans by the operator's rules: refused before Azure is asked, as the provisioner refuses.

Each case here reached ``create_volume`` before the CSI controller planned volumes with the
domain's rules (and some then depended on Azure to refuse): the call count shows the check
now happens first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from csi_plugin import GROUP, SUBSCRIPTION, Plugin, running, seeded

from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.csi._stubs import pb
from elasticsan_snapshotter.domain.decisions import GIB
from elasticsan_snapshotter.domain.identity import DiskSnapshotId, ElasticSanId

Code = grpc.StatusCode
EAST = ElasticSanId(SUBSCRIPTION, "rg", "san-east")
SNAPSHOT = GROUP.snapshot("snap-a")
DISK = DiskSnapshotId(SUBSCRIPTION, "rg-exports", "export-a")


@pytest.fixture
async def two_regions() -> AsyncIterator[Plugin]:
    azure = seeded(InMemoryAzure())  # san1 in westeurope, one of the plugin's managed SANs
    azure.add_elastic_san(EAST, location="eastus", base_size_tib=2)
    azure.add_volume_group(EAST.volume_group("vg1"))
    azure.add_volume(GROUP.volume("vol-a"), 10)
    azure.add_snapshot(SNAPSHOT, GROUP.volume("vol-a"))
    async with running(azure) as served:
        yield served


def restore(source_id: str, size: int = 10 * GIB, **parameters: str) -> pb.CreateVolumeRequest:
    capability = pb.VolumeCapability(
        mount=pb.VolumeCapability.MountVolume(),
        access_mode=pb.VolumeCapability.AccessMode(mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER),
    )
    return pb.CreateVolumeRequest(
        name="restored",
        capacity_range=pb.CapacityRange(required_bytes=size),
        volume_capabilities=[capability],
        parameters=parameters,
        volume_content_source=pb.VolumeContentSource(
            snapshot=pb.VolumeContentSource.SnapshotSource(snapshot_id=source_id)
        ),
    )


async def refusal(plugin: Plugin, request: pb.CreateVolumeRequest) -> grpc.aio.AioRpcError:
    plugin.azure.reset_calls()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await plugin.controller.CreateVolume(request)
    assert plugin.azure.call_count("create_volume") == 0, "refused only by Azure, not by the plan"
    return caught.value


async def test_a_restore_into_a_san_of_another_region_is_refused_before_azure(two_regions: Plugin) -> None:
    handle = SNAPSHOT.handle(SUBSCRIPTION)
    error = await refusal(two_regions, restore(handle, elasticSanId=EAST.arm_id, volumeGroup="vg1"))
    assert error.code() == Code.INVALID_ARGUMENT
    assert "region 'westeurope' but the target Elastic SAN is in 'eastus'" in (error.details() or "")


async def test_a_restore_of_a_disk_snapshot_still_copying_waits_before_azure(two_regions: Plugin) -> None:
    await two_regions.azure.create_disk_snapshot(DISK, SNAPSHOT, location="westeurope")
    error = await refusal(two_regions, restore(DISK.arm_id, volumeGroup="vg1"))
    assert error.code() == Code.UNAVAILABLE
    assert "still being copied" in (error.details() or "")


async def test_a_restore_of_a_disk_snapshot_in_another_region_is_refused_before_azure(
    two_regions: Plugin,
) -> None:
    await two_regions.azure.create_disk_snapshot(DISK, SNAPSHOT, location="westeurope")
    two_regions.azure.advance(two_regions.azure.export_seconds + 1)
    error = await refusal(two_regions, restore(DISK.arm_id, elasticSanId=EAST.arm_id, volumeGroup="vg1"))
    assert error.code() == Code.INVALID_ARGUMENT
    assert "same region" in (error.details() or "")
    created = await two_regions.controller.CreateVolume(restore(DISK.arm_id, volumeGroup="vg1"))
    assert created.volume.capacity_bytes == 10 * GIB


async def test_a_restore_smaller_than_its_snapshot_is_refused_not_grown(two_regions: Plugin) -> None:
    error = await refusal(two_regions, restore(SNAPSHOT.handle(SUBSCRIPTION), size=5 * GIB))
    assert error.code() == Code.INVALID_ARGUMENT
    assert "smaller than the source snapshot's 10Gi" in (error.details() or "")
