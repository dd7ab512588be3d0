"""The real Velero (CSI snapshots, no data mover) backing up, restoring and deleting Elastic SAN claims.

Velero drives everything here: its CSI plugin makes the VolumeSnapshots, its restore makes the
static contents and the claims, its backup deletion makes the contents that delete snapshots.
The operator answers as snapshotter and provisioner; the emulator holds the Elastic SAN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from content_scenario import checksums, mount_claim, write_files
from kubernetes.client.rest import ApiException
from operator_scenario import (
    GROUP,
    RESOURCE_GROUP,
    SAN,
    VERSION,
    VOLUME_GROUP,
    Kube,
    snapshots_of,
    static_claim,
    unique_name,
)
from velero_stack import VeleroObjects

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.local_cluster.node import NodeStandIn
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess
from waiting import wait_for

CONTENTS = "volumesnapshotcontents.snapshot.storage.k8s.io"
FILES = ["a.bin", "b.bin"]

# First of all: skip (or, under CI, fail) before any process starts when Velero cannot be built.
pytestmark = pytest.mark.usefixtures("velero_artifacts")


def claim_to_back_up(kube: Kube, namespace: str, volume: Any, policy: str = "Delete") -> str:
    """A static Elastic SAN claim ``data`` whose StorageClass and VolumeSnapshotClass Velero picks."""
    storage_class, snapshot_class = unique_name("esan"), unique_name("esan-snap")
    kube.create_storage_class(storage_class)
    kube.create_snapshot_class(snapshot_class, policy)  # labelled velero.io/csi-volumesnapshot-class
    return static_claim(kube, namespace, volume, storage_class)


def completed_backup(velero: VeleroObjects, name: str, namespace: str) -> tuple[dict[str, Any], str]:
    """Back up ``namespace``; returns the Backup and the snapshot handle its one content holds."""
    backup = velero.backup(name, namespace)
    status = backup["status"]
    assert status["phase"] == "Completed", status
    assert status.get("warnings", 0) == 0, velero.stack.cli("backup", "logs", name)
    assert status.get("errors", 0) == 0
    assert status.get("csiVolumeSnapshotsCompleted") == status.get("csiVolumeSnapshotsAttempted") == 1, status
    [content] = velero.stack.store.backup_items(name, CONTENTS)
    assert content["spec"]["driver"] == DRIVER_NAME
    assert content["status"]["readyToUse"] is True
    assert "error" not in content["status"]
    return backup, content["status"]["snapshotHandle"]


def snapshot_arm_id(volume: Any, handle: str) -> str:
    return volume.id.rsplit("/volumes/", 1)[0] + "/snapshots/" + handle.split("#")[-1]


def restored_volume(kube: Kube, esan: ElasticSanMgmtClient, namespace: str, name: str = "data") -> Any:
    claim = kube.wait_claim_bound(namespace, name, timeout=180)
    return esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, f"pvc-{claim.metadata.uid}")


def gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def remove_namespace_and_volumes(kube: Kube, namespace: str, *pvs: str) -> None:
    """What a lost cluster or namespace leaves for a restore: neither the claims nor their PVs."""
    kube.core.delete_namespace(namespace)
    wait_for("the namespace to go", lambda: gone(lambda: kube.core.read_namespace(namespace)), timeout=180)
    for pv in pvs:
        kube.core.delete_persistent_volume(pv)
        wait_for(f"the PV {pv} to go", lambda pv=pv: gone(lambda: kube.core.read_persistent_volume(pv)))


def backup_contents_in_cluster(kube: Kube, backup: str) -> list[dict[str, Any]]:
    listed = kube.custom.list_cluster_custom_object(
        GROUP, VERSION, "volumesnapshotcontents", label_selector=f"velero.io/backup-name={backup}"
    )
    return list(listed["items"])


def test_backup_then_restore_after_the_namespace_and_volume_are_gone(
    operator: OperatorProcess,
    velero: VeleroObjects,
    node: NodeStandIn,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    pv = claim_to_back_up(kube, namespace, volume)
    backup_name = unique_name("full")
    source = mount_claim(node, kube, namespace, "data")
    backed_up = write_files(source, FILES)

    _, handle = completed_backup(velero, backup_name, namespace)
    # Written after the backup: the restore must not show these.
    assert write_files(source, FILES) != backed_up
    node.unpublish(source)
    [snapshot] = snapshots_of(esan, volume.name)
    assert snapshot.id == snapshot_arm_id(volume, handle)
    # Velero's finalizing step removed its VolumeSnapshots and contents; the snapshot stayed.
    assert backup_contents_in_cluster(kube, backup_name) == []

    remove_namespace_and_volumes(kube, namespace, pv)

    restore = velero.restore(unique_name("restore"), backup_name)
    assert restore["status"]["phase"] == "Completed", restore["status"]
    assert restore["status"].get("errors", 0) == 0
    new_volume = restored_volume(kube, esan, namespace)
    assert new_volume.creation_data.create_source == "VolumeSnapshot"
    assert new_volume.creation_data.source_id.lower() == snapshot.id.lower()
    assert new_volume.name != volume.name
    assert gone(lambda: kube.core.read_persistent_volume(pv)), "Velero restores no PV of a CSI snapshot"
    restored = mount_claim(node, kube, namespace, "data")
    assert not restored.formatted  # the snapshot's file system, not a new one
    assert checksums(restored, FILES) == backed_up


def test_restore_into_another_namespace_while_the_original_exists(
    operator: OperatorProcess,
    velero: VeleroObjects,
    node: NodeStandIn,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    pv = claim_to_back_up(kube, namespace, volume)
    backup_name = unique_name("mapped")
    original_mount = mount_claim(node, kube, namespace, "data")
    backed_up = write_files(original_mount, FILES)
    _, handle = completed_backup(velero, backup_name, namespace)
    # Written after the backup: the copy must not show these, the original must keep them.
    after_backup = write_files(original_mount, FILES)
    assert after_backup != backed_up

    mapped = unique_name("t-mapped")
    try:
        restore = velero.restore(
            unique_name("restore"), backup_name, f"--namespace-mappings={namespace}:{mapped}"
        )
        assert restore["status"]["phase"] == "Completed", restore["status"]
        copy = restored_volume(kube, esan, mapped)
        assert copy.creation_data.source_id.lower() == snapshot_arm_id(volume, handle).lower()
        # The original claim, its PV and its volume are untouched.
        original = kube.core.read_namespaced_persistent_volume_claim("data", namespace)
        assert original.status.phase == "Bound"
        assert original.spec.volume_name == pv
        assert copy.name not in (volume.name, pv)
        assert esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, volume.name).size_gi_b == 10
        assert kube.core.read_persistent_volume(pv).spec.csi.volume_attributes["iqn"] == (
            volume.storage_target.target_iqn
        )
        # The copy holds what was backed up; the original still holds what it held.
        copy_mount = mount_claim(node, kube, mapped, "data")
        assert not copy_mount.formatted
        assert checksums(copy_mount, FILES) == backed_up
        assert checksums(original_mount, FILES) == after_backup
    finally:
        if not gone(lambda: kube.core.read_namespace(mapped)):
            kube.core.delete_namespace(mapped)


# Velero deletes a backup's snapshot through a content it makes with deletionPolicy Delete,
# so the class's own policy does not matter.
@pytest.mark.parametrize("class_policy", ["Delete", "Retain"])
def test_deleting_a_backup_deletes_its_snapshot_and_nothing_else(
    operator: OperatorProcess,
    velero: VeleroObjects,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
    class_policy: str,
) -> None:
    volume = source_volume(10)
    claim_to_back_up(kube, namespace, volume, class_policy)
    doomed, kept = unique_name("doomed"), unique_name("kept")
    _, doomed_handle = completed_backup(velero, doomed, namespace)
    _, kept_handle = completed_backup(velero, kept, namespace)
    assert {s.id for s in snapshots_of(esan, volume.name)} == {
        snapshot_arm_id(volume, doomed_handle),
        snapshot_arm_id(volume, kept_handle),
    }

    velero.stack.cli("backup", "delete", doomed, "--confirm")
    wait_for("the Backup to go", lambda: velero.get("backups", doomed) is None, timeout=180, interval=1.0)

    assert [s.id for s in snapshots_of(esan, volume.name)] == [snapshot_arm_id(volume, kept_handle)]
    assert velero.stack.store.keys(f"backups/{doomed}/") == []
    assert velero.stack.store.keys(f"backups/{kept}/") != []
    handles = [
        (c.get("status") or {}).get("snapshotHandle") or c["spec"]["source"].get("snapshotHandle")
        for c in kube.custom.list_cluster_custom_object(GROUP, VERSION, "volumesnapshotcontents")["items"]
    ]
    assert doomed_handle not in handles
    assert velero.get("backups", kept) is not None
