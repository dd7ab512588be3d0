"""Bad input gets a clear Event or final error; the operator keeps running; nothing is left in Azure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from operator_scenario import (
    RESOURCE_GROUP,
    SAN,
    VOLUME_GROUP,
    Kube,
    static_claim,
    unique_name,
    wait_for,
)

from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess


def classes(kube: Kube, **storage_parameters: str) -> tuple[str, str]:
    storage_class, snapshot_class = unique_name("esan"), unique_name("esan-snap")
    kube.create_storage_class(storage_class, **storage_parameters)
    kube.create_snapshot_class(snapshot_class, "Delete")
    return storage_class, snapshot_class


def content_error(kube: Kube, namespace: str, name: str) -> str:
    def error() -> str | None:
        vs = kube.snapshot(namespace, name) or {}
        bound = (vs.get("status") or {}).get("boundVolumeSnapshotContentName")
        content = kube.content(bound) if bound else None
        return ((content or {}).get("status") or {}).get("error", {}).get("message")

    return wait_for(f"a final error on the content of {name}", error)


def test_volume_that_maps_to_nothing(
    operator: OperatorProcess, emulator: EmulatorProcess, kube: Kube, namespace: str
) -> None:
    storage_class, snapshot_class = classes(kube)
    pv = unique_name("stray-pv")
    kube.create_static_volume(
        pv,
        storage_class,
        iqn="iqn.2023-03.net.windows.core.blob.ElasticSan.es-000000000000:nothing",
        portal="es-000000000000.z1.blob.storage.azure.net:3260",
    )
    kube.create_claim(namespace, "data", storage_class, volume_name=pv)
    kube.wait_claim_bound(namespace, "data")
    emulator.admin.reset_counters()
    kube.create_snapshot(namespace, "snap", "data", snapshot_class=snapshot_class)

    warning = kube.wait_event(namespace, "snap", "SourceVolumeNotMapped")
    assert "maps to no managed Elastic SAN volume" in warning.message
    assert "elasticsan.snapshotter.dev/volume-id" in warning.message
    message = content_error(kube, namespace, "snap")
    assert f"PersistentVolume {pv} maps to no managed Elastic SAN volume" in message
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots") == 0
    assert operator.running()


def test_volume_in_an_unmanaged_san(
    operator: OperatorProcess, esan: ElasticSanMgmtClient, kube: Kube, namespace: str
) -> None:
    other = unique_name("other")[:20]
    esan.elastic_sans.begin_create(
        RESOURCE_GROUP,
        other,
        {
            "location": "westeurope",
            "properties": {"sku": {"name": "Premium_LRS"}, "baseSizeTiB": 1, "extendedCapacitySizeTiB": 0},
        },
    ).result()
    esan.volume_groups.begin_create(RESOURCE_GROUP, other, "vg1", {}).result()
    volume = esan.volumes.begin_create(
        RESOURCE_GROUP, other, "vg1", "elsewhere", {"properties": {"sizeGiB": 5}}
    ).result()
    storage_class, snapshot_class = classes(kube)
    pv = unique_name("unmanaged-pv")
    target = volume.storage_target
    kube.create_static_volume(
        pv,
        storage_class,
        iqn=target.target_iqn,
        portal=f"{target.target_portal_hostname}:3260",
        annotations={"elasticsan.snapshotter.dev/volume-id": volume.id},
    )
    kube.create_claim(namespace, "data", storage_class, volume_name=pv)
    kube.wait_claim_bound(namespace, "data")
    kube.create_snapshot(namespace, "snap", "data", snapshot_class=snapshot_class)

    message = content_error(kube, namespace, "snap")
    assert f"Elastic SAN {volume.id.split('/volumegroups/')[0]}" in message
    assert "does not manage" in message
    assert snapshots_of_group(esan, other) == []
    assert operator.running()


def snapshots_of_group(esan: ElasticSanMgmtClient, san: str) -> list[Any]:
    return list(esan.volume_snapshots.list_by_volume_group(RESOURCE_GROUP, san, "vg1"))


def test_missing_snapshot_class(
    operator: OperatorProcess, kube: Kube, namespace: str, source_volume: Callable[..., Any]
) -> None:
    storage_class, _ = classes(kube)
    static_claim(kube, namespace, source_volume(5), storage_class)
    kube.create_snapshot(namespace, "snap", "data", snapshot_class="no-such-class")
    warning = kube.wait_event(namespace, "snap", "SnapshotClassMissing")
    assert "VolumeSnapshotClass no-such-class does not exist" in warning.message


def test_snapshot_of_an_unbound_claim(operator: OperatorProcess, kube: Kube, namespace: str) -> None:
    storage_class, snapshot_class = classes(kube)
    kube.create_claim(namespace, "waiting", storage_class, volume_name="no-such-pv")
    kube.create_snapshot(namespace, "snap", "waiting", snapshot_class=snapshot_class)
    warning = kube.wait_event(namespace, "snap", "SourceClaimNotBound")
    assert f"PersistentVolumeClaim {namespace}/waiting is Pending" in warning.message


def ready_snapshot(kube: Kube, namespace: str, volume: Any, storage_class: str, snapshot_class: str) -> None:
    static_claim(kube, namespace, volume, storage_class)
    kube.create_snapshot(namespace, "snap", "data", snapshot_class=snapshot_class)
    kube.wait_snapshot_ready(namespace, "snap")


def assert_no_volume_for(
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    claim: str,
    san: str = SAN,
    group: str = VOLUME_GROUP,
) -> None:
    uid = kube.core.read_namespaced_persistent_volume_claim(claim, namespace).metadata.uid
    with pytest.raises(ResourceNotFoundError):
        esan.volumes.get(RESOURCE_GROUP, san, group, f"pvc-{uid}")


def test_restore_across_regions(
    operator: OperatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
    san_id: str,
) -> None:
    east = unique_name("east")[:20]
    esan.elastic_sans.begin_create(
        RESOURCE_GROUP,
        east,
        {
            "location": "eastus",
            "properties": {"sku": {"name": "Premium_LRS"}, "baseSizeTiB": 1, "extendedCapacitySizeTiB": 0},
        },
    ).result()
    esan.volume_groups.begin_create(RESOURCE_GROUP, east, "vg1", {}).result()
    east_id = san_id.rsplit("/", 1)[0] + f"/{east}"
    _, snapshot_class = classes(kube)
    local_class = unique_name("esan")
    kube.create_storage_class(local_class)
    ready_snapshot(kube, namespace, source_volume(5), local_class, snapshot_class)
    far_class = unique_name("esan-east")
    kube.create_storage_class(far_class, elasticSanId=east_id, volumeGroup="vg1")

    kube.create_claim(namespace, "far", far_class, "5Gi", snapshot="snap")
    refused = kube.wait_event(namespace, "far", "ProvisioningFailed")
    assert "region" in refused.message
    assert "eastus" in refused.message
    assert_no_volume_for(esan, kube, namespace, "far", east, "vg1")


def test_capacity_exhausted(
    operator: OperatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    storage_class, snapshot_class = classes(kube)
    ready_snapshot(kube, namespace, source_volume(5), storage_class, snapshot_class)
    kube.create_claim(namespace, "huge", storage_class, "5000Gi", snapshot="snap")  # the SAN holds 4 TiB
    refused = kube.wait_event(namespace, "huge", "ProvisioningFailed")
    assert refused.message.startswith("CapacityExhausted")
    assert_no_volume_for(esan, kube, namespace, "huge")
    assert operator.running()
