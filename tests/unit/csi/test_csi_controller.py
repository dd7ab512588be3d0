"""The Controller service, called through a real grpc.aio server over InMemoryAzure."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from csi_plugin import GROUP, SUBSCRIPTION, Plugin, running, seeded

from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.csi._stubs import pb
from elasticsan_snapshotter.domain.decisions import GIB
from elasticsan_snapshotter.domain.errors import Throttled
from elasticsan_snapshotter.domain.identity import SnapshotId, VolumeId

Code = grpc.StatusCode
RPC = pb.ControllerServiceCapability.RPC
Mode = pb.VolumeCapability.AccessMode


def capability(mode: int = Mode.SINGLE_NODE_WRITER, block: bool = False) -> pb.VolumeCapability:
    access = pb.VolumeCapability.AccessMode(mode=mode)
    if block:
        return pb.VolumeCapability(block=pb.VolumeCapability.BlockVolume(), access_mode=access)
    return pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(fs_type="ext4"), access_mode=access)


def volume_request(name: str, size: int = 10 * GIB, **kwargs: object) -> pb.CreateVolumeRequest:
    return pb.CreateVolumeRequest(
        name=name,
        capacity_range=pb.CapacityRange(required_bytes=size),
        volume_capabilities=[capability()],
        parameters={"volumeGroup": "vg1"},
        **kwargs,  # type: ignore[arg-type]
    )


async def code_of(call: object) -> Code:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code()


async def make_snapshot(plugin: Plugin, volume: str = "vol-a", name: str = "snap-a") -> pb.Snapshot:
    created = await plugin.controller.CreateVolume(volume_request(volume))
    answer = await plugin.controller.CreateSnapshot(
        pb.CreateSnapshotRequest(name=name, source_volume_id=created.volume.volume_id)
    )
    return answer.snapshot


async def test_capabilities_are_the_three_we_serve(plugin: Plugin) -> None:
    answer = await plugin.controller.ControllerGetCapabilities(pb.ControllerGetCapabilitiesRequest())
    kinds = {c.rpc.type for c in answer.capabilities}
    assert kinds == {RPC.CREATE_DELETE_VOLUME, RPC.CREATE_DELETE_SNAPSHOT, RPC.LIST_SNAPSHOTS}


async def test_create_volume_rounds_up_and_carries_iscsi_attributes(plugin: Plugin) -> None:
    answer = await plugin.controller.CreateVolume(volume_request("data", size=GIB + 1))
    volume = answer.volume
    assert volume.capacity_bytes == 2 * GIB
    assert volume.volume_id == f"{SUBSCRIPTION}#rg#san1#vg1#data"
    info = await plugin.azure.get_volume(VolumeId.parse(volume.volume_id, SUBSCRIPTION))
    assert volume.volume_context["iqn"] == info.target_iqn
    assert volume.volume_context["targetPortal"] == info.target_portal
    assert volume.volume_context["lun"] == "0"
    assert volume.volume_context["portals"] == "[]"
    assert not volume.HasField("content_source")


async def test_create_volume_is_idempotent_by_name(plugin: Plugin) -> None:
    first = await plugin.controller.CreateVolume(volume_request("sanity-Volume-ABCDEF01"))
    again = await plugin.controller.CreateVolume(volume_request("sanity-Volume-ABCDEF01"))
    assert first.volume.volume_id == again.volume.volume_id
    assert len(await plugin.azure.list_volumes(GROUP)) == 1
    bigger = volume_request("sanity-Volume-ABCDEF01", size=20 * GIB)
    assert await code_of(plugin.controller.CreateVolume(bigger)) == Code.ALREADY_EXISTS


async def test_create_volume_uses_the_only_volume_group_when_none_is_named(plugin: Plugin) -> None:
    request = volume_request("plain")
    del request.parameters["volumeGroup"]
    answer = await plugin.controller.CreateVolume(request)
    assert answer.volume.volume_id == f"{SUBSCRIPTION}#rg#san1#vg1#plain"


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (pb.CreateVolumeRequest(volume_capabilities=[capability()]), Code.INVALID_ARGUMENT),
        (pb.CreateVolumeRequest(name="v"), Code.INVALID_ARGUMENT),
        (
            pb.CreateVolumeRequest(name="v", volume_capabilities=[capability(Mode.MULTI_NODE_MULTI_WRITER)]),
            Code.INVALID_ARGUMENT,
        ),
        (
            pb.CreateVolumeRequest(
                name="v", volume_capabilities=[capability()], parameters={"volumeGroupp": "vg1"}
            ),
            Code.INVALID_ARGUMENT,
        ),
        (
            pb.CreateVolumeRequest(
                name="v",
                volume_capabilities=[capability()],
                capacity_range=pb.CapacityRange(required_bytes=GIB + 1, limit_bytes=GIB + 2),
            ),
            Code.OUT_OF_RANGE,
        ),
    ],
)
async def test_create_volume_refuses_bad_requests(
    plugin: Plugin, request_: pb.CreateVolumeRequest, code: Code
) -> None:
    assert await code_of(plugin.controller.CreateVolume(request_)) == code
    assert await plugin.azure.list_volumes(GROUP) == []


async def test_create_volume_from_a_snapshot_echoes_the_source(plugin: Plugin) -> None:
    snapshot = await make_snapshot(plugin)
    source = pb.VolumeContentSource(
        snapshot=pb.VolumeContentSource.SnapshotSource(snapshot_id=snapshot.snapshot_id)
    )
    answer = await plugin.controller.CreateVolume(volume_request("restored", volume_content_source=source))
    assert answer.volume.content_source == source
    info = await plugin.azure.get_volume(VolumeId.parse(answer.volume.volume_id, SUBSCRIPTION))
    assert info.source == SnapshotId.parse(snapshot.snapshot_id, SUBSCRIPTION)


async def test_create_volume_from_a_missing_snapshot_is_not_found(plugin: Plugin) -> None:
    for snapshot_id in ("non-existing-snapshot-id", "rg#san1#vg1#nothing"):
        source = pb.VolumeContentSource(
            snapshot=pb.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id)
        )
        call = plugin.controller.CreateVolume(volume_request("restored", volume_content_source=source))
        assert await code_of(call) == Code.NOT_FOUND


async def test_delete_volume_is_idempotent_and_keeps_snapshots(plugin: Plugin) -> None:
    snapshot = await make_snapshot(plugin)
    request = pb.DeleteVolumeRequest(volume_id=snapshot.source_volume_id)
    assert await code_of(plugin.controller.DeleteVolume(request)) == Code.FAILED_PRECONDITION
    await plugin.controller.DeleteSnapshot(pb.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot_id))
    await plugin.controller.DeleteVolume(request)
    await plugin.controller.DeleteVolume(request)
    await plugin.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id="fake-vol-id"))
    assert await plugin.azure.list_volumes(GROUP) == []
    assert await code_of(plugin.controller.DeleteVolume(pb.DeleteVolumeRequest())) == Code.INVALID_ARGUMENT


async def test_validate_volume_capabilities(plugin: Plugin) -> None:
    created = await plugin.controller.CreateVolume(volume_request("data"))
    volume_id = created.volume.volume_id
    ok = await plugin.controller.ValidateVolumeCapabilities(
        pb.ValidateVolumeCapabilitiesRequest(
            volume_id=volume_id, volume_capabilities=[capability(block=True)]
        )
    )
    assert list(ok.confirmed.volume_capabilities) == [capability(block=True)]
    refused = await plugin.controller.ValidateVolumeCapabilities(
        pb.ValidateVolumeCapabilitiesRequest(
            volume_id=volume_id, volume_capabilities=[capability(Mode.MULTI_NODE_READER_ONLY)]
        )
    )
    assert not refused.HasField("confirmed")
    assert "single node" in refused.message
    for missing in ("fake-vol-id-123", "rg#san1#vg1#absent"):
        call = plugin.controller.ValidateVolumeCapabilities(
            pb.ValidateVolumeCapabilitiesRequest(volume_id=missing, volume_capabilities=[capability()])
        )
        assert await code_of(call) == Code.NOT_FOUND
    no_caps = pb.ValidateVolumeCapabilitiesRequest(volume_id=volume_id)
    assert await code_of(plugin.controller.ValidateVolumeCapabilities(no_caps)) == Code.INVALID_ARGUMENT


async def test_create_snapshot_is_idempotent_and_reports_size_and_time(plugin: Plugin) -> None:
    snapshot = await make_snapshot(plugin)
    assert snapshot.ready_to_use
    assert snapshot.size_bytes == 10 * GIB
    assert snapshot.snapshot_id == f"{SUBSCRIPTION}#rg#san1#vg1#snap-a"
    assert snapshot.creation_time.seconds > 0
    again = await plugin.controller.CreateSnapshot(
        pb.CreateSnapshotRequest(name="snap-a", source_volume_id=snapshot.source_volume_id)
    )
    assert again.snapshot == snapshot
    assert len(await plugin.azure.list_snapshots(GROUP)) == 1


async def test_create_snapshot_with_the_name_of_another_volumes_snapshot_already_exists(
    plugin: Plugin,
) -> None:
    await make_snapshot(plugin, "vol-a", "shared-name")
    other = await plugin.controller.CreateVolume(volume_request("vol-b"))
    call = plugin.controller.CreateSnapshot(
        pb.CreateSnapshotRequest(name="shared-name", source_volume_id=other.volume.volume_id)
    )
    assert await code_of(call) == Code.ALREADY_EXISTS


async def test_create_snapshot_reports_not_ready_until_azure_succeeds(plugin: Plugin) -> None:
    snapshot = await make_snapshot(plugin)
    snapshot_id = SnapshotId.parse(snapshot.snapshot_id, SUBSCRIPTION)
    request = pb.CreateSnapshotRequest(name="snap-a", source_volume_id=snapshot.source_volume_id)
    plugin.azure.set_snapshot_state(snapshot_id, "Creating")
    assert not (await plugin.controller.CreateSnapshot(request)).snapshot.ready_to_use
    plugin.azure.set_snapshot_state(snapshot_id, "Failed")
    assert await code_of(plugin.controller.CreateSnapshot(request)) == Code.INTERNAL


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (pb.CreateSnapshotRequest(source_volume_id="rg#san1#vg1#v"), Code.INVALID_ARGUMENT),
        (pb.CreateSnapshotRequest(name="s"), Code.INVALID_ARGUMENT),
        (pb.CreateSnapshotRequest(name="s", source_volume_id="rg#san1#vg1#absent"), Code.NOT_FOUND),
        (
            pb.CreateSnapshotRequest(name="s", source_volume_id="rg#san1#vg1#v", parameters={"x": "y"}),
            Code.INVALID_ARGUMENT,
        ),
    ],
)
async def test_create_snapshot_refuses_bad_requests(
    plugin: Plugin, request_: pb.CreateSnapshotRequest, code: Code
) -> None:
    assert await code_of(plugin.controller.CreateSnapshot(request_)) == code


async def test_delete_snapshot_missing_or_malformed_is_ok(plugin: Plugin) -> None:
    snapshot = await make_snapshot(plugin)
    for snapshot_id in (snapshot.snapshot_id, snapshot.snapshot_id, "reallyfakesnapshotid"):
        await plugin.controller.DeleteSnapshot(pb.DeleteSnapshotRequest(snapshot_id=snapshot_id))
    assert await plugin.azure.list_snapshots(GROUP) == []
    assert (
        await code_of(plugin.controller.DeleteSnapshot(pb.DeleteSnapshotRequest())) == Code.INVALID_ARGUMENT
    )


async def test_list_snapshots_filters(plugin: Plugin) -> None:
    first = await make_snapshot(plugin, "vol-a", "snap-a")
    second = await make_snapshot(plugin, "vol-b", "snap-b")
    listed = await plugin.controller.ListSnapshots(pb.ListSnapshotsRequest())
    assert [e.snapshot for e in listed.entries] == [first, second]
    by_id = await plugin.controller.ListSnapshots(pb.ListSnapshotsRequest(snapshot_id=second.snapshot_id))
    assert [e.snapshot for e in by_id.entries] == [second]
    by_volume = await plugin.controller.ListSnapshots(
        pb.ListSnapshotsRequest(source_volume_id=first.source_volume_id)
    )
    assert [e.snapshot for e in by_volume.entries] == [first]
    mismatch = pb.ListSnapshotsRequest(
        snapshot_id=second.snapshot_id, source_volume_id=first.source_volume_id
    )
    assert not (await plugin.controller.ListSnapshots(mismatch)).entries
    for unknown in (
        pb.ListSnapshotsRequest(snapshot_id="none-exist-id"),
        pb.ListSnapshotsRequest(snapshot_id="rg#san1#vg1#none"),
        pb.ListSnapshotsRequest(source_volume_id="fake-vol-id-0123456789"),
        pb.ListSnapshotsRequest(source_volume_id="rg#san1#nogroup#v"),
    ):
        answer = await plugin.controller.ListSnapshots(unknown)
        assert list(answer.entries) == []


async def test_list_snapshots_pages_with_tokens(plugin: Plugin) -> None:
    made = [await make_snapshot(plugin, f"vol-{i}", f"snap-{i}") for i in range(5)]
    page = await plugin.controller.ListSnapshots(pb.ListSnapshotsRequest(max_entries=2))
    assert [e.snapshot for e in page.entries] == made[:2]
    assert page.next_token
    rest = await plugin.controller.ListSnapshots(pb.ListSnapshotsRequest(starting_token=page.next_token))
    assert [e.snapshot for e in rest.entries] == made[2:]
    assert rest.next_token == ""
    for bad in ("garbage", "-1", "99"):
        call = plugin.controller.ListSnapshots(pb.ListSnapshotsRequest(starting_token=bad))
        assert await code_of(call) == Code.ABORTED


class GatedAzure(InMemoryAzure):
    """Holds create_snapshot until released, so a second call meets the first in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def create_snapshot(self, snapshot: SnapshotId, source: VolumeId):  # type: ignore[no-untyped-def]
        self.entered.set()
        await self.release.wait()
        return await super().create_snapshot(snapshot, source)


async def test_a_second_call_on_an_id_in_flight_is_aborted() -> None:
    azure = GatedAzure()
    seeded(azure)
    azure.release.set()
    async with running(azure) as plugin:
        await _race_on_one_snapshot(plugin, azure)


async def _race_on_one_snapshot(plugin: Plugin, azure: GatedAzure) -> None:
    created = await plugin.controller.CreateVolume(volume_request("vol-a"))
    azure.release.clear()
    request = pb.CreateSnapshotRequest(name="snap-a", source_volume_id=created.volume.volume_id)
    first = asyncio.ensure_future(plugin.controller.CreateSnapshot(request))
    await asyncio.wait_for(azure.entered.wait(), timeout=5)
    # A guard that queued instead of refusing would hang here, so bound the wait.
    assert await asyncio.wait_for(code_of(plugin.controller.CreateSnapshot(request)), 5) == Code.ABORTED
    delete = pb.DeleteSnapshotRequest(snapshot_id="rg#san1#vg1#snap-a")
    assert await asyncio.wait_for(code_of(plugin.controller.DeleteSnapshot(delete)), 5) == Code.ABORTED
    azure.release.set()
    assert (await first).snapshot.ready_to_use
    await plugin.controller.CreateSnapshot(request)  # the guard is released afterwards


async def test_azure_faults_map_to_retryable_codes_and_are_counted(plugin: Plugin) -> None:
    before = metrics.REGISTRY.get_sample_value(
        "elasticsan_snapshotter_csi_rpcs_total", {"method": "CreateVolume", "code": "UNAVAILABLE"}
    )
    plugin.azure.fail_next("create_volume", Throttled("slow down", retry_after=3))
    assert await code_of(plugin.controller.CreateVolume(volume_request("v"))) == Code.UNAVAILABLE
    after = metrics.REGISTRY.get_sample_value(
        "elasticsan_snapshotter_csi_rpcs_total", {"method": "CreateVolume", "code": "UNAVAILABLE"}
    )
    assert (after or 0) - (before or 0) == 1
    await plugin.controller.CreateVolume(volume_request("v"))


async def test_other_rpcs_are_unimplemented(plugin: Plugin) -> None:
    calls = [
        plugin.controller.ControllerPublishVolume(
            pb.ControllerPublishVolumeRequest(volume_id="a", node_id="n")
        ),
        plugin.controller.ListVolumes(pb.ListVolumesRequest()),
        plugin.controller.GetCapacity(pb.GetCapacityRequest()),
        plugin.controller.ControllerExpandVolume(pb.ControllerExpandVolumeRequest(volume_id="a")),
        plugin.controller.GetSnapshot(pb.GetSnapshotRequest(snapshot_id="a")),
    ]
    for call in calls:
        assert await code_of(call) == Code.UNIMPLEMENTED


async def test_the_example_storage_class_is_accepted_as_it_is_written(plugin: Plugin) -> None:
    """The operator's and the CSI controller's classes are one set of manifests."""
    from pathlib import Path

    import yaml

    example = yaml.safe_load((Path(__file__).parents[3] / "examples" / "storageclass.yaml").read_text())
    params = {str(k): str(v) for k, v in example["parameters"].items()}
    params["elasticSanId"] = GROUP.san.arm_id  # the example's SAN is a placeholder
    params["volumeGroup"] = GROUP.name
    params.pop("csi.storage.k8s.io/fstype")  # csi-provisioner takes it out of the parameters
    request = pb.CreateVolumeRequest(
        name="from-example", volume_capabilities=[capability()], parameters=params
    )
    created = await plugin.controller.CreateVolume(request)
    assert VolumeId.parse(created.volume.volume_id, SUBSCRIPTION).volume_group == GROUP
