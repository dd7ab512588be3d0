"""Exports to Microsoft.Compute snapshots and volumes created from managed-disk snapshots."""

from __future__ import annotations

import time
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import CreationData, DiskCreateOption, Snapshot, SnapshotSku
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from emulator_sdk import LOCATION, export_body, make_layout, snapshot_body

from elasticsan_snapshotter.emulator.process import EmulatorInfo, EmulatorProcess

pytestmark = pytest.mark.integration


def _snapshot(
    esan: ElasticSanMgmtClient, rg: str, volume_id: str, name: str = "snap1", san: str = "san1"
) -> str:
    snapshot = esan.volume_snapshots.begin_create(rg, san, "vg1", name, snapshot_body(volume_id)).result()
    assert snapshot.id is not None
    return snapshot.id


def test_export_completes_and_progress_reaches_100(
    esan: ElasticSanMgmtClient, compute: ComputeManagementClient, rg: str, emulator: EmulatorProcess
) -> None:
    layout = make_layout(esan, rg, size_gib=32)
    source = _snapshot(esan, rg, layout.volume_id)
    model = Snapshot(
        location=LOCATION,
        sku=SnapshotSku(name="Standard_LRS"),
        incremental=True,
        creation_data=CreationData(
            create_option=DiskCreateOption.COPY_FROM_SAN_SNAPSHOT, elastic_san_resource_id=source
        ),
    )
    exported = compute.snapshots.begin_create_or_update(rg, "export-1", model).result()
    assert exported.type == "Microsoft.Compute/snapshots"
    assert exported.provisioning_state == "Succeeded"
    assert exported.disk_size_gb == 32
    assert exported.incremental is True
    assert exported.creation_data.create_option == "CopyFromSanSnapshot"
    assert exported.completion_percent is not None
    assert exported.completion_percent < 100.0
    # --export-seconds 1 in these tests.
    deadline = time.monotonic() + 5
    percent = exported.completion_percent
    while percent < 100.0 and time.monotonic() < deadline:
        time.sleep(0.1)
        percent = compute.snapshots.get(rg, "export-1").completion_percent or 0.0
    assert percent == 100.0
    # The SDK accepts only 200/202 from this PUT.
    assert emulator.admin.count(method="PUT", kind="diskSnapshots", status=202) == 1

    # An unchanged PUT is idempotent and answered 200.
    compute.snapshots.begin_create_or_update(rg, "export-1", export_body(source)).result()
    assert emulator.admin.count(method="PUT", kind="diskSnapshots", status=200) == 1

    compute.snapshots.begin_delete(rg, "export-1").result()
    with pytest.raises(ResourceNotFoundError):
        compute.snapshots.get(rg, "export-1")


def _export_error(
    compute: ComputeManagementClient, rg: str, name: str, body: dict[str, Any]
) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as error:
        compute.snapshots.begin_create_or_update(rg, name, body).result()
    return error.value


def test_export_refused_across_regions(
    esan: ElasticSanMgmtClient, compute: ComputeManagementClient, rg: str
) -> None:
    layout = make_layout(esan, rg)
    source = _snapshot(esan, rg, layout.volume_id)
    error = _export_error(compute, rg, "elsewhere", export_body(source, location="eastus"))
    assert error.status_code == 400
    assert error.error is not None
    assert error.error.code == "InvalidParameter"
    # The documented form of the id without a leading slash is accepted too.
    compute.snapshots.begin_create_or_update(rg, "same-region", export_body(source.lstrip("/"))).result()


def test_export_refused_above_4_tib(
    esan: ElasticSanMgmtClient, compute: ComputeManagementClient, rg: str
) -> None:
    layout = make_layout(esan, rg, size_gib=4097, base_tib=9)
    source = _snapshot(esan, rg, layout.volume_id)
    error = _export_error(compute, rg, "too-big", export_body(source))
    assert isinstance(error, ResourceExistsError)
    assert error.status_code == 409
    assert error.error is not None
    assert error.error.code == "OperationNotAllowed"
    # Exactly 4 TiB is still allowed.
    esan.volumes.begin_create(rg, "san1", "vg1", "four", {"properties": {"sizeGiB": 4096}}).result()
    four = esan.volumes.get(rg, "san1", "vg1", "four").id
    assert four is not None
    compute.snapshots.begin_create_or_update(
        rg, "four-tib", export_body(_snapshot(esan, rg, four, "s4"))
    ).result()


def test_volume_from_disk_snapshot(
    esan: ElasticSanMgmtClient, compute: ComputeManagementClient, rg: str, emulator: EmulatorProcess
) -> None:
    layout = make_layout(esan, rg, size_gib=6)
    source = _snapshot(esan, rg, layout.volume_id)
    emulator.admin.update_settings(exportSeconds=0)
    try:
        disk_snapshot = compute.snapshots.begin_create_or_update(
            rg, "disk-snap", export_body(source)
        ).result()
    finally:
        emulator.admin.update_settings(exportSeconds=1)
    assert disk_snapshot.id is not None

    def from_disk(name: str, size: int) -> Any:
        body = {
            "properties": {
                "sizeGiB": size,
                "creationData": {"createSource": "DiskSnapshot", "sourceId": disk_snapshot.id},
            }
        }
        return esan.volumes.begin_create(rg, "san1", "vg1", name, body).result()

    volume = from_disk("from-disk", 6)
    assert volume.creation_data.create_source == "DiskSnapshot"
    assert volume.creation_data.source_id == disk_snapshot.id
    with pytest.raises(HttpResponseError) as small:
        from_disk("smaller", 5)
    assert small.value.status_code == 400

    # A SAN in another region cannot use it.
    other = make_layout(esan, f"{rg}-east", location="eastus")
    assert other.volume_id
    body = {
        "properties": {
            "sizeGiB": 6,
            "creationData": {"createSource": "DiskSnapshot", "sourceId": disk_snapshot.id},
        }
    }
    with pytest.raises(HttpResponseError) as region:
        esan.volumes.begin_create(f"{rg}-east", "san1", "vg1", "far", body).result()
    assert region.value.status_code == 400
    assert region.value.error is not None
    assert region.value.error.code == "InvalidParameter"


def test_export_of_a_missing_snapshot_is_refused(
    compute: ComputeManagementClient, rg: str, info: EmulatorInfo
) -> None:
    missing = (
        f"/subscriptions/{info.subscription_id}/resourceGroups/{rg}/providers/Microsoft.ElasticSan/"
        "elasticSans/san1/volumegroups/vg1/snapshots/none"
    )
    error = _export_error(compute, rg, "nothing", export_body(missing))
    assert error.status_code == 404
