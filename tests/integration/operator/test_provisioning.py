"""Empty volumes for claims of our StorageClass, and what happens when they are released."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from operator_scenario import RESOURCE_GROUP, SAN, VOLUME_GROUP, Kube, snapshots_of, unique_name, wait_for

from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess


def provisioned(kube: Kube, namespace: str, storage_class: str, claim: str, size: str) -> tuple[str, str]:
    kube.create_claim(namespace, claim, storage_class, size)
    bound = kube.wait_claim_bound(namespace, claim)
    return bound.spec.volume_name, f"pvc-{bound.metadata.uid}"


def test_empty_volume_is_provisioned_and_deleted_on_release(
    operator: OperatorProcess, esan: ElasticSanMgmtClient, kube: Kube, namespace: str, san_id: str
) -> None:
    storage_class = unique_name("esan-dyn")
    kube.create_storage_class(storage_class, "Delete", elasticSanId=san_id, volumeGroup=VOLUME_GROUP)
    pv_name, volume_name = provisioned(kube, namespace, storage_class, "scratch", "3Gi")

    volume = esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, volume_name)
    assert volume.size_gi_b == 3
    assert volume.creation_data is None or volume.creation_data.create_source in (None, "None")
    pv = kube.core.read_persistent_volume(pv_name)
    assert pv.spec.csi.volume_attributes["iqn"] == volume.storage_target.target_iqn
    assert pv.spec.persistent_volume_reclaim_policy == "Delete"

    kube.core.delete_namespaced_persistent_volume_claim("scratch", namespace)
    wait_for(
        "the PV to be deleted",
        lambda: not [p for p in kube.core.list_persistent_volume().items if p.metadata.name == pv_name],
    )
    with pytest.raises(ResourceNotFoundError):
        esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, volume_name)


def test_released_volume_with_snapshots_is_kept_unless_the_class_says_otherwise(
    operator: OperatorProcess, esan: ElasticSanMgmtClient, kube: Kube, namespace: str, san_id: str
) -> None:
    keeping, dropping = unique_name("esan-keep"), unique_name("esan-drop")
    kube.create_storage_class(keeping, "Delete", elasticSanId=san_id, volumeGroup=VOLUME_GROUP)
    kube.create_storage_class(
        dropping, "Delete", elasticSanId=san_id, volumeGroup=VOLUME_GROUP, deleteSnapshotsWithVolume="true"
    )
    snapshot_class = unique_name("esan-snap")
    kube.create_snapshot_class(snapshot_class, "Retain")

    outcomes = {}
    for storage_class in (keeping, dropping):
        claim = f"claim-{storage_class}"
        pv_name, volume_name = provisioned(kube, namespace, storage_class, claim, "2Gi")
        kube.create_snapshot(namespace, f"snap-{storage_class}", claim, snapshot_class=snapshot_class)
        kube.wait_snapshot_ready(namespace, f"snap-{storage_class}")
        kube.core.delete_namespaced_persistent_volume_claim(claim, namespace)
        outcomes[storage_class] = (pv_name, volume_name)

    pv_kept, volume_kept = outcomes[keeping]
    warning = kube.wait_event("default", pv_kept, "VolumeHasSnapshots")
    assert f"snapshot-{kube.snapshot(namespace, f'snap-{keeping}')['metadata']['uid']}" in warning.message  # type: ignore[index]
    assert kube.core.read_persistent_volume(pv_kept).status.phase == "Released"
    assert esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, volume_kept).name == volume_kept
    assert len(snapshots_of(esan, volume_kept)) == 1

    pv_dropped, volume_dropped = outcomes[dropping]
    wait_for(
        "the PV to be deleted",
        lambda: not [p for p in kube.core.list_persistent_volume().items if p.metadata.name == pv_dropped],
    )
    with pytest.raises(ResourceNotFoundError):
        esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, volume_dropped)
    assert snapshots_of(esan, volume_dropped) == []
