"""The csi-snapshotter contract beyond the happy path: Retain, vanished snapshots, imports, Velero."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from azure.mgmt.elasticsan import ElasticSanMgmtClient
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
    wait_for,
)

from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess

GIB = 2**30
BEING_DELETED = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"


def ready_snapshot(
    kube: Kube, namespace: str, volume: Any, policy: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    storage_class, snapshot_class = unique_name("esan"), unique_name("esan-snap")
    kube.create_storage_class(storage_class)
    kube.create_snapshot_class(snapshot_class, policy)
    static_claim(kube, namespace, volume, storage_class)
    kube.create_snapshot(namespace, "snap", "data", snapshot_class=snapshot_class)
    vs = kube.wait_snapshot_ready(namespace, "snap")
    content = kube.content(vs["status"]["boundVolumeSnapshotContentName"])
    assert content is not None
    return vs, content


def test_retain_keeps_the_azure_snapshot(
    operator: OperatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    _, content = ready_snapshot(kube, namespace, volume, "Retain")
    name = content["metadata"]["name"]

    kube.delete_snapshot(namespace, "snap")
    wait_for("the VolumeSnapshot to go", lambda: kube.snapshot(namespace, "snap") is None)
    kept = wait_for(
        "snapshot-controller to mark the content",
        lambda: (c := kube.content(name)) and BEING_DELETED in c["metadata"].get("annotations", {}) and c,
    )
    assert kept["status"]["readyToUse"] is True
    assert len(snapshots_of(esan, volume.name)) == 1

    # Deleting the retained content itself releases it without touching Azure.
    kube.custom.delete_cluster_custom_object(GROUP, VERSION, "volumesnapshotcontents", name)
    wait_for("the content to go", lambda: kube.content(name) is None)
    assert len(snapshots_of(esan, volume.name)) == 1


def test_deleting_a_content_whose_snapshot_is_already_gone(
    operator: OperatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    vs, content = ready_snapshot(kube, namespace, volume, "Delete")
    esan.volume_snapshots.begin_delete(
        RESOURCE_GROUP, SAN, VOLUME_GROUP, f"snapshot-{vs['metadata']['uid']}"
    ).result()

    kube.delete_snapshot(namespace, "snap")
    wait_for("the VolumeSnapshot to go", lambda: kube.snapshot(namespace, "snap") is None)
    wait_for("the content to go", lambda: kube.content(content["metadata"]["name"]) is None)


def test_pre_provisioned_content_by_arm_id_is_imported(
    operator: OperatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(12)
    snapshot = esan.volume_snapshots.begin_create(
        RESOURCE_GROUP,
        SAN,
        VOLUME_GROUP,
        unique_name("imported"),
        {"properties": {"creationData": {"sourceId": volume.id}}},
    ).result()
    content = unique_name("imported-content")
    kube.create_content(content, snapshot.id, snapshot_namespace=namespace, snapshot_name="imported")
    kube.create_snapshot(namespace, "imported", content=content)

    vs = kube.wait_snapshot_ready(namespace, "imported")
    assert vs["status"]["restoreSize"] == "12Gi"
    found = kube.content(content)
    assert found is not None
    assert found["status"]["snapshotHandle"] == snapshot.id
    assert found["status"]["restoreSize"] == 12 * GIB


def test_missing_pre_provisioned_snapshot_is_a_final_error_and_deletes_freely(
    operator: OperatorProcess, kube: Kube, namespace: str, san_id: str
) -> None:
    content = unique_name("missing-content")
    handle = f"{RESOURCE_GROUP}#{SAN}#{VOLUME_GROUP}#no-such-snapshot"
    kube.create_content(
        content, handle, snapshot_namespace=namespace, snapshot_name="ghost", deletion_policy="Delete"
    )

    errored = wait_for(
        "a final error on the content",
        lambda: (c := kube.content(content)) and (c.get("status") or {}).get("error") and c,
    )
    assert "no-such-snapshot" in errored["status"]["error"]["message"]
    assert errored["status"].get("readyToUse") is False

    kube.custom.delete_cluster_custom_object(GROUP, VERSION, "volumesnapshotcontents", content)
    wait_for("the content to go", lambda: kube.content(content) is None)


def test_velero_backup_and_restore_choreography(
    operator: OperatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    storage_class, snapshot_class = unique_name("esan"), unique_name("esan-snap")
    kube.create_storage_class(storage_class)
    kube.create_snapshot_class(snapshot_class, "Delete")  # carries velero.io/csi-volumesnapshot-class
    static_claim(kube, namespace, volume, storage_class)

    # Backup: Velero picks the class whose driver is the claim's provisioner and labelled for it.
    classes = kube.custom.list_cluster_custom_object(GROUP, VERSION, "volumesnapshotclasses")["items"]
    provisioner = kube.storage.read_storage_class(storage_class).provisioner
    chosen = [
        c["metadata"]["name"]
        for c in classes
        if c["driver"] == provisioner
        and "velero.io/csi-volumesnapshot-class" in (c["metadata"].get("labels") or {})
    ]
    assert snapshot_class in chosen
    vs = kube.create_snapshot(
        namespace,
        "velero-data-",
        "data",
        snapshot_class=snapshot_class,
        labels={"velero.io/backup-name": "nightly"},
        generate_name=True,
    )
    vs_name = vs["metadata"]["name"]
    errors_seen: list[Any] = []

    def handle_set() -> dict[str, Any] | None:
        current = kube.snapshot(namespace, vs_name) or {}
        content_name = (current.get("status") or {}).get("boundVolumeSnapshotContentName")
        content = kube.content(content_name) if content_name else None
        if content and (content.get("status") or {}).get("error"):
            errors_seen.append(content["status"]["error"])
        return content if content and (content.get("status") or {}).get("snapshotHandle") else None

    content = wait_for("the content's snapshot handle", handle_set, interval=0.5)
    content = wait_for(
        "readyToUse",
        lambda: (c := kube.content(content["metadata"]["name"])) and c["status"].get("readyToUse") and c,
    )
    assert errors_seen == []
    handle = content["status"]["snapshotHandle"]
    # Finalizing: Velero flips the policy to Retain, then deletes the VolumeSnapshot and the content.
    kube.custom.patch_cluster_custom_object(
        GROUP,
        VERSION,
        "volumesnapshotcontents",
        content["metadata"]["name"],
        {"spec": {"deletionPolicy": "Retain"}},
    )
    kube.delete_snapshot(namespace, vs_name)
    kube.custom.delete_cluster_custom_object(
        GROUP, VERSION, "volumesnapshotcontents", content["metadata"]["name"]
    )
    wait_for("the backup's objects to go", lambda: kube.content(content["metadata"]["name"]) is None)
    assert len(snapshots_of(esan, volume.name)) == 1, (
        "the storage snapshot must survive the backup's clean-up"
    )

    # Restore: a static content with Retain, a VolumeSnapshot bound to it, a claim from it.
    restored_name = hashlib.sha256(f"restore-uid/{vs_name}".encode()).hexdigest()[:63]
    kube.create_content(restored_name, handle, snapshot_namespace=namespace, snapshot_name=restored_name)
    kube.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "volumesnapshots",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VolumeSnapshot",
            "metadata": {
                "name": restored_name,
                "annotations": {"velero.io/csi-vsc-deletion-policy": "Retain"},
            },
            "spec": {"source": {"volumeSnapshotContentName": restored_name}},
        },
    )
    kube.wait_snapshot_ready(namespace, restored_name)
    kube.create_claim(namespace, "data-restored", storage_class, "10Gi", snapshot=restored_name)
    claim = kube.wait_claim_bound(namespace, "data-restored")
    new_volume = esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, f"pvc-{claim.metadata.uid}")
    assert new_volume.creation_data.create_source == "VolumeSnapshot"
    assert new_volume.creation_data.source_id.lower().endswith(f"/snapshots/{handle.split('#')[-1]}")
