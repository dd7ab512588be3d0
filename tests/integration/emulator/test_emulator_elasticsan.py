"""Microsoft.ElasticSan operations through the synchronous azure-mgmt-elasticsan client."""

from __future__ import annotations

import re
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from azure.mgmt.elasticsan.models import ProvisioningStates, XMsDeleteSnapshots
from emulator_sdk import LOCATION, make_layout, make_san, snapshot_body

from elasticsan_snapshotter.emulator.process import EmulatorProcess

pytestmark = pytest.mark.integration

IQN = re.compile(r"^iqn\.\d{4}-\d{2}\.net\.windows\.core\.blob\.ElasticSan\.es-([a-z0-9]{12}):vol1$")
PORTAL = re.compile(r"^es-([a-z0-9]{12})\.z\d+\.blob\.storage\.azure\.net$")


def test_elastic_san_lifecycle(esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess) -> None:
    san = esan.elastic_sans.begin_create(
        rg,
        "san1",
        {
            "location": LOCATION,
            "tags": {"team": "storage"},
            "properties": {
                "sku": {"name": "Premium_ZRS"},
                "availabilityZones": ["1"],
                "baseSizeTiB": 2,
                "extendedCapacitySizeTiB": 3,
            },
        },
    ).result()
    sub = emulator.info.subscription_id
    assert (
        san.id == f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ElasticSan/elasticSans/san1"
    )
    assert san.type == "Microsoft.ElasticSan/elasticSans"
    assert san.provisioning_state == ProvisioningStates.SUCCEEDED
    assert (san.total_size_ti_b, san.total_iops, san.total_m_bps) == (5, 10000, 400)
    assert san.sku.name == "Premium_ZRS"
    assert san.sku.tier == "Premium"
    assert san.tags == {"team": "storage"}
    assert san.system_data is not None
    assert san.system_data.created_by == emulator.info.client_id

    updated = esan.elastic_sans.begin_update(
        rg, "san1", {"properties": {"extendedCapacitySizeTiB": 4}}
    ).result()
    assert updated.total_size_ti_b == 6
    assert esan.elastic_sans.get(rg, "san1").extended_capacity_size_ti_b == 4

    assert [s.name for s in esan.elastic_sans.list_by_resource_group(rg)] == ["san1"]
    assert san.id in [s.id for s in esan.elastic_sans.list_by_subscription()]

    esan.elastic_sans.begin_delete(rg, "san1").result()
    with pytest.raises(ResourceNotFoundError):
        esan.elastic_sans.get(rg, "san1")
    assert emulator.admin.count(method="PUT", kind="elasticSans") == 1
    assert emulator.admin.count(method="PATCH", kind="elasticSans", status=202) == 1
    assert emulator.admin.count(method="DELETE", kind="elasticSans", status=202) == 1


def test_volume_group_lifecycle(esan: ElasticSanMgmtClient, rg: str) -> None:
    make_san(esan, rg)
    group = esan.volume_groups.begin_create(
        rg, "san1", "vg1", {"identity": {"type": "SystemAssigned"}, "properties": {"protocolType": "Iscsi"}}
    ).result()
    assert group.type == "Microsoft.ElasticSan/elasticSans/volumeGroups"
    assert group.id is not None
    assert group.id.endswith("/elasticSans/san1/volumegroups/vg1")
    assert group.identity is not None
    assert group.identity.principal_id
    assert group.encryption == "EncryptionAtRestWithPlatformKey"
    updated = esan.volume_groups.begin_update(
        rg, "san1", "vg1", {"properties": {"enforceDataIntegrityCheckForIscsi": True}}
    ).result()
    assert updated.enforce_data_integrity_check_for_iscsi is True
    assert [g.name for g in esan.volume_groups.list_by_elastic_san(rg, "san1")] == ["vg1"]
    assert esan.elastic_sans.get(rg, "san1").volume_group_count == 1
    esan.volume_groups.begin_delete(rg, "san1", "vg1").result()
    assert list(esan.volume_groups.list_by_elastic_san(rg, "san1")) == []


def test_volume_lifecycle_and_storage_target(esan: ElasticSanMgmtClient, rg: str) -> None:
    layout = make_layout(esan, rg, size_gib=16)
    volume = esan.volumes.get(rg, "san1", "vg1", "vol1")
    assert volume.type == "Microsoft.ElasticSan/elasticSans/volumeGroups/volumes"
    assert volume.id == layout.volume_id
    assert volume.volume_id
    assert volume.size_gi_b == 16
    assert volume.creation_data is not None
    assert volume.creation_data.create_source == "None"
    target = volume.storage_target
    assert target is not None
    iqn, portal = IQN.match(target.target_iqn or ""), PORTAL.match(target.target_portal_hostname or "")
    assert iqn
    assert portal
    assert iqn.group(1) == portal.group(1)
    assert target.target_portal_port == 3260
    assert target.status == "Running"

    grown = esan.volumes.begin_update(rg, "san1", "vg1", "vol1", {"properties": {"sizeGiB": 20}}).result()
    assert grown.size_gi_b == 20
    with pytest.raises(HttpResponseError) as shrink:
        esan.volumes.begin_update(rg, "san1", "vg1", "vol1", {"properties": {"sizeGiB": 5}}).result()
    assert shrink.value.status_code == 400
    assert shrink.value.error is not None
    assert shrink.value.error.code == "InvalidParameter"
    assert esan.elastic_sans.get(rg, "san1").total_volume_size_gi_b == 20

    esan.volumes.begin_delete(rg, "san1", "vg1", "vol1").result()
    with pytest.raises(ResourceNotFoundError):
        esan.volumes.get(rg, "san1", "vg1", "vol1")
    # Deleting what is gone is not an error in ARM.
    esan.volumes.begin_delete(rg, "san1", "vg1", "vol1").result()


def test_snapshot_lifecycle(esan: ElasticSanMgmtClient, rg: str) -> None:
    layout = make_layout(esan, rg, size_gib=12)
    snapshot = esan.volume_snapshots.begin_create(
        rg, "san1", "vg1", "snap-1", snapshot_body(layout.volume_id)
    ).result()
    assert snapshot.type == "Microsoft.ElasticSan/elasticSans/volumeGroups/snapshots"
    assert snapshot.id == f"{layout.volume_id.rsplit('/volumes/', 1)[0]}/snapshots/snap-1"
    assert snapshot.volume_name == "vol1"
    assert snapshot.source_volume_size_gi_b == 12
    assert snapshot.creation_data.source_id == layout.volume_id
    assert snapshot.provisioning_state == ProvisioningStates.SUCCEEDED
    assert esan.volume_snapshots.get(rg, "san1", "vg1", "snap-1").id == snapshot.id
    esan.volume_snapshots.begin_delete(rg, "san1", "vg1", "snap-1").result()
    with pytest.raises(ResourceNotFoundError):
        esan.volume_snapshots.get(rg, "san1", "vg1", "snap-1")


def test_repeated_snapshot_put_creates_one_snapshot(
    esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    layout = make_layout(esan, rg)
    first = esan.volume_snapshots.begin_create(
        rg, "san1", "vg1", "once", snapshot_body(layout.volume_id)
    ).result()
    again = esan.volume_snapshots.begin_create(
        rg, "san1", "vg1", "once", snapshot_body(layout.volume_id)
    ).result()
    assert first.id == again.id
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots", status=201) == 1
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots", status=200) == 1
    assert len(list(esan.volume_snapshots.list_by_volume_group(rg, "san1", "vg1"))) == 1


def test_snapshot_list_filter_by_volume_name(esan: ElasticSanMgmtClient, rg: str) -> None:
    layout = make_layout(esan, rg)
    other = esan.volumes.begin_create(rg, "san1", "vg1", "vol2", {"properties": {"sizeGiB": 1}}).result()
    assert other.id is not None
    for name, source in (("a1", layout.volume_id), ("a2", layout.volume_id), ("b1", other.id)):
        esan.volume_snapshots.begin_create(rg, "san1", "vg1", name, snapshot_body(source)).result()

    def names(**kwargs: Any) -> list[str]:
        return [s.name or "" for s in esan.volume_snapshots.list_by_volume_group(rg, "san1", "vg1", **kwargs)]

    assert names() == ["a1", "a2", "b1"]
    assert names(filter="volumeName eq vol1") == ["a1", "a2"]
    assert names(filter="volumeName eq 'vol2'") == ["b1"]
    assert names(filter="volumeName eq nothing") == []
    with pytest.raises(HttpResponseError) as bad:
        names(filter="sizeGiB gt 1")
    assert bad.value.status_code == 400


def test_paging_follows_absolute_next_links(
    esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    layout = make_layout(esan, rg)
    for index in range(5):
        esan.volume_snapshots.begin_create(
            rg, "san1", "vg1", f"s{index}", snapshot_body(layout.volume_id)
        ).result()
    emulator.admin.update_settings(pageSize=2)
    try:
        emulator.admin.reset_counters()
        pages = list(
            esan.volume_snapshots.list_by_volume_group(
                rg, "san1", "vg1", filter="volumeName eq vol1"
            ).by_page()
        )
        assert [[s.name for s in page] for page in pages] == [["s0", "s1"], ["s2", "s3"], ["s4"]]
        assert emulator.admin.count(method="GET", kind="volumeSnapshots") == 3
    finally:
        emulator.admin.update_settings(pageSize=100)


def test_names_follow_the_spec_rules(esan: ElasticSanMgmtClient, rg: str) -> None:
    layout = make_layout(esan, rg)
    bad_calls = [
        lambda: make_san(esan, rg, san="x"),
        lambda: esan.volume_groups.begin_create(rg, "san1", "vg.bad", {}).result(),
        lambda: esan.volumes.begin_create(
            rg, "san1", "vg1", "Vol_1", {"properties": {"sizeGiB": 1}}
        ).result(),
        lambda: esan.volume_snapshots.begin_create(
            rg, "san1", "vg1", "Snap..1", snapshot_body(layout.volume_id)
        ).result(),
    ]
    for call in bad_calls:
        with pytest.raises(HttpResponseError) as error:
            call()
        assert error.value.status_code == 400
        assert error.value.error is not None
        assert error.value.error.code == "InvalidResourceName"
    ok = esan.volume_snapshots.begin_create(
        rg, "san1", "vg1", "daily.2026-01_01", snapshot_body(layout.volume_id)
    )
    assert ok.result().name == "daily.2026-01_01"


def test_missing_parent_is_404(esan: ElasticSanMgmtClient, rg: str) -> None:
    with pytest.raises(ResourceNotFoundError) as error:
        esan.volume_groups.begin_create(rg, "nosan", "vg1", {}).result()
    assert error.value.error is not None
    assert error.value.error.code == "ParentResourceNotFound"


def test_volume_delete_refused_while_snapshots_exist(
    esan: ElasticSanMgmtClient, rg: str, emulator: EmulatorProcess
) -> None:
    layout = make_layout(esan, rg)
    esan.volume_snapshots.begin_create(rg, "san1", "vg1", "keep", snapshot_body(layout.volume_id)).result()
    with pytest.raises(ResourceExistsError) as refused:
        esan.volumes.begin_delete(rg, "san1", "vg1", "vol1").result()
    assert refused.value.status_code == 409
    assert refused.value.error is not None
    assert refused.value.error.code == "Conflict"
    with pytest.raises(ResourceExistsError):
        esan.volumes.begin_delete(
            rg, "san1", "vg1", "vol1", x_ms_delete_snapshots=XMsDeleteSnapshots.FALSE
        ).result()
    assert esan.volumes.get(rg, "san1", "vg1", "vol1").provisioning_state == ProvisioningStates.SUCCEEDED

    esan.volumes.begin_delete(
        rg, "san1", "vg1", "vol1", x_ms_delete_snapshots=XMsDeleteSnapshots.TRUE
    ).result()
    assert list(esan.volume_snapshots.list_by_volume_group(rg, "san1", "vg1")) == []
    assert list(esan.volumes.list_by_volume_group(rg, "san1", "vg1")) == []
    assert emulator.admin.count(method="DELETE", kind="volumes", status=409) == 2


def test_parents_with_children_cannot_be_deleted(esan: ElasticSanMgmtClient, rg: str) -> None:
    make_layout(esan, rg)
    with pytest.raises(ResourceExistsError):
        esan.volume_groups.begin_delete(rg, "san1", "vg1").result()
    with pytest.raises(ResourceExistsError):
        esan.elastic_sans.begin_delete(rg, "san1").result()


def test_volume_from_volume_snapshot(esan: ElasticSanMgmtClient, rg: str) -> None:
    layout = make_layout(esan, rg, size_gib=8)
    snapshot = esan.volume_snapshots.begin_create(
        rg, "san1", "vg1", "base", snapshot_body(layout.volume_id)
    ).result()
    restored = esan.volumes.begin_create(
        rg,
        "san1",
        "vg1",
        "restored",
        {
            "properties": {
                "sizeGiB": 8,
                "creationData": {"createSource": "VolumeSnapshot", "sourceId": snapshot.id},
            }
        },
    ).result()
    assert restored.creation_data is not None
    assert restored.creation_data.create_source == "VolumeSnapshot"
    assert restored.creation_data.source_id == snapshot.id
    with pytest.raises(HttpResponseError) as small:
        esan.volumes.begin_create(
            rg,
            "san1",
            "vg1",
            "too-small",
            {
                "properties": {
                    "sizeGiB": 4,
                    "creationData": {"createSource": "VolumeSnapshot", "sourceId": snapshot.id},
                }
            },
        ).result()
    assert small.value.status_code == 400


def test_pre_backup_and_pre_restore_validate(esan: ElasticSanMgmtClient, rg: str) -> None:
    make_layout(esan, rg)
    result = esan.volumes.begin_pre_backup(rg, "san1", "vg1", {"volumeNames": ["vol1"]}).result()
    assert result.validation_status == "success"
    with pytest.raises(HttpResponseError):
        esan.volumes.begin_pre_backup(rg, "san1", "vg1", {"volumeNames": ["vol1", "vol2"]}).result()
