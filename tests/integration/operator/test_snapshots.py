"""Dynamic snapshots, restores and deletion of Elastic SAN volumes, end to end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.mgmt.elasticsan import ElasticSanMgmtClient
from operator_scenario import (
    RESOURCE_GROUP,
    SAN,
    VOLUME_GROUP,
    Kube,
    snapshots_of,
    static_claim,
    unique_name,
    wait_for,
)

from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess

GIB = 2**30


def test_dynamic_snapshot_restore_and_delete(
    operator: OperatorProcess,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    storage_class, snapshot_class = unique_name("esan"), unique_name("esan-snap")
    kube.create_storage_class(storage_class)
    kube.create_snapshot_class(snapshot_class, "Delete")
    static_claim(kube, namespace, volume, storage_class)
    emulator.admin.reset_counters()

    kube.create_snapshot(namespace, "snap", "data", snapshot_class=snapshot_class)
    vs = kube.wait_snapshot_ready(namespace, "snap")

    content = kube.content(vs["status"]["boundVolumeSnapshotContentName"])
    assert content is not None
    status = content["status"]
    assert status["readyToUse"] is True
    assert status["restoreSize"] == 10 * GIB
    assert isinstance(status["creationTime"], int)
    assert status["creationTime"] > 1_600_000_000 * 10**9
    subscription = volume.id.split("/")[2]
    assert status["snapshotHandle"] == (
        f"{subscription}#{RESOURCE_GROUP}#{SAN}#{VOLUME_GROUP}#snapshot-{vs['metadata']['uid']}"
    )
    assert "error" not in status
    assert "snapshot.storage.kubernetes.io/volumesnapshot-being-created" not in (
        content["metadata"].get("annotations") or {}
    )
    assert vs["status"]["restoreSize"] == "10Gi"
    [azure_snapshot] = snapshots_of(esan, volume.name)
    assert azure_snapshot.name == f"snapshot-{vs['metadata']['uid']}"
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots") == 1

    # Restore into a new volume of the same size.
    kube.create_claim(namespace, "restored", storage_class, "10Gi", snapshot="snap")
    restored = kube.wait_claim_bound(namespace, "restored")
    pv = kube.core.read_persistent_volume(restored.spec.volume_name)
    assert pv.metadata.name == f"pvc-{restored.metadata.uid}"
    assert pv.spec.csi.driver == "iscsi.csi.k8s.io"
    assert pv.spec.csi.volume_handle == (
        f"{subscription}#{RESOURCE_GROUP}#{SAN}#{VOLUME_GROUP}#pvc-{restored.metadata.uid}"
    )
    new_volume = esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, f"pvc-{restored.metadata.uid}")
    assert new_volume.creation_data.create_source == "VolumeSnapshot"
    assert new_volume.creation_data.source_id.lower() == azure_snapshot.id.lower()
    assert pv.spec.csi.volume_attributes["iqn"] == new_volume.storage_target.target_iqn
    assert pv.spec.csi.volume_attributes["lun"] == "0"
    assert pv.spec.capacity["storage"] == "10Gi"
    assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == "elasticsan.snapshotter.dev"

    # A claim smaller than the snapshot is refused with a clear Event.
    kube.create_claim(namespace, "too-small", storage_class, "5Gi", snapshot="snap")
    refused = kube.wait_event(namespace, "too-small", "ProvisioningFailed")
    assert "restore size" in refused.message
    assert kube.core.read_namespaced_persistent_volume_claim("too-small", namespace).status.phase == "Pending"

    # A larger one works, and says the file system is not grown.
    kube.create_claim(namespace, "larger", storage_class, "20Gi", snapshot="snap")
    larger = kube.wait_claim_bound(namespace, "larger")
    assert kube.core.read_persistent_volume(larger.spec.volume_name).spec.capacity["storage"] == "20Gi"
    note = kube.wait_event(namespace, "larger", "VolumeLargerThanSnapshot")
    assert "not grown" in note.message

    # Deleting the VolumeSnapshot (policy Delete) deletes the Azure snapshot and the content.
    kube.core.delete_namespaced_persistent_volume_claim("too-small", namespace)
    kube.delete_snapshot(namespace, "snap")
    wait_for("the VolumeSnapshot to go", lambda: kube.snapshot(namespace, "snap") is None)
    wait_for("the content to go", lambda: kube.content(content["metadata"]["name"]) is None)
    assert snapshots_of(esan, volume.name) == []
