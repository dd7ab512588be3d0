"""A group member's snapshot brought back as a backup tool's restore does: a pre-provisioned content of
the member's driver (``iscsi.csi.k8s.io``) naming the member's Elastic SAN snapshot, without the group
annotation, and a VolumeSnapshot bound to it.

Checked against the real control plane, snapshot-controller and the emulator: the snapshot becomes
ready, a claim restored from it holds what the member held at the cut (real ext4, node stand-in),
and deleting it honours the content's policy (Delete removes the Elastic SAN snapshot, Retain keeps it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import content_scenario as contents
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from group_scenario import GIB, GROUP_DRIVER, MEMBER_HANDLE, Groups, group_snapshots
from operator_scenario import RESOURCE_GROUP, SAN, VOLUME_GROUP, Kube, unique_name, wait_for

from elasticsan_snapshotter.local_cluster.node import NodeStandIn
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess

FILES = ["a.bin", "b.bin"]
SNAPSHOTS = "snapshot.storage.k8s.io"


def _exists(esan: ElasticSanMgmtClient, name: str) -> bool:
    try:
        esan.volume_snapshots.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, name)
    except ResourceNotFoundError:
        return False
    return True


def _import(
    kube: Kube, namespace: str, handle: str, policy: str, annotations: dict[str, str] | None = None
) -> tuple[str, str]:
    """The content and VolumeSnapshot a restore writes for a member's handle; returns their names."""
    content, snapshot = unique_name("velero-vsc"), unique_name("velero-vs")
    kube.create_content(
        content,
        handle,
        snapshot_namespace=namespace,
        snapshot_name=snapshot,
        deletion_policy=policy,
        driver=GROUP_DRIVER,
        annotations=annotations,
    )
    kube.create_snapshot(namespace, snapshot, content=content)
    return content, snapshot


def test_a_member_handle_imported_with_the_iscsi_driver_restores_and_deletes_by_policy(
    operator: OperatorProcess,
    node: NodeStandIn,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups = Groups(kube, namespace)
    storage_class, group_class = groups.classes("Delete")
    claims = groups.labelled_claims(source_volume, storage_class, 2, {"app": "imported"})
    mounts = {c: contents.mount_claim(node, kube, namespace, c) for c, _ in claims}
    at_cut = {c: contents.write_files(mount, FILES) for c, mount in mounts.items()}
    groups.create("backup", group_class, {"app": "imported"})
    groups.wait_ready("backup")
    content = groups.content_of("backup")
    group_handle = content["status"]["volumeGroupSnapshotHandle"]
    for mount in mounts.values():
        contents.write_files(mount, FILES)  # after the cut: no restore may show these
    handle_of = {}
    for vs in groups.wait_members_ready("backup", 2):
        member = kube.content(vs["status"]["boundVolumeSnapshotContentName"]) or {}
        handle_of[vs["spec"]["source"]["persistentVolumeClaimName"]] = member["status"]["snapshotHandle"]
    (first, _), (second, _) = claims

    # Policy Delete, the handle as the operator wrote it (subscription first).
    vsc, vs_name = _import(kube, namespace, handle_of[first], "Delete")
    ready = kube.wait_snapshot_ready(namespace, vs_name)
    assert ready["status"]["restoreSize"] == "10Gi"
    status = (kube.content(vsc) or {})["status"]
    assert status["snapshotHandle"] == handle_of[first]
    assert status["restoreSize"] == 10 * GIB
    assert status["creationTime"] > 0
    assert "error" not in status
    kube.create_claim(namespace, "restored", storage_class, "10Gi", snapshot=vs_name)
    restored_claim = kube.wait_claim_bound(namespace, "restored")
    new_volume = esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, f"pvc-{restored_claim.metadata.uid}")
    snapshot_name = handle_of[first].rsplit("#", 1)[1]
    assert new_volume.creation_data.source_id.lower().endswith(f"/snapshots/{snapshot_name}".lower())
    restored = contents.mount_claim(node, kube, namespace, "restored")
    assert not restored.formatted
    assert contents.checksums(restored, FILES) == at_cut[first]

    kube.delete_snapshot(namespace, vs_name)
    wait_for("the imported content to go", lambda: kube.content(vsc) is None, 90)
    wait_for("its Elastic SAN snapshot to be deleted", lambda: not _exists(esan, snapshot_name), 60)
    assert len(group_snapshots(esan, f"{group_handle}-")) == 1  # the other member is untouched

    # Policy Retain, the handle as an ARM ID, and the member's group annotation kept from the backup:
    # still an import (a live member has a volumeHandle source), kept when the content goes.
    kept_name = handle_of[second].rsplit("#", 1)[1]
    arm_id = next(s.id for s in group_snapshots(esan, f"{group_handle}-") if s.name == kept_name)
    vsc, vs_name = _import(kube, namespace, arm_id, "Retain", {MEMBER_HANDLE: group_handle})
    kube.wait_snapshot_ready(namespace, vs_name)
    kube.create_claim(namespace, "restored-kept", storage_class, "10Gi", snapshot=vs_name)
    assert (
        contents.checksums(contents.mount_claim(node, kube, namespace, "restored-kept"), FILES)
        == at_cut[second]
    )
    kube.delete_snapshot(namespace, vs_name)
    wait_for("the VolumeSnapshot to go", lambda: kube.snapshot(namespace, vs_name) is None, 90)
    kube.custom.delete_cluster_custom_object(SNAPSHOTS, "v1", "volumesnapshotcontents", vsc)
    wait_for("the retained content to go", lambda: kube.content(vsc) is None, 90)
    assert _exists(esan, kept_name)

    # The group still owns its members: deleting it (policy Delete) removes the retained one too, and
    # the member snapshot the import deleted counts as deleted.
    groups.delete("backup")
    wait_for("the member snapshots to be deleted", lambda: not group_snapshots(esan, f"{group_handle}-"), 90)
    wait_for("the group content to go", lambda: groups.content(content["metadata"]["name"]) is None, 90)


def test_a_missing_snapshot_imported_with_the_iscsi_driver_is_a_clear_error(
    operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    missing = f"{RESOURCE_GROUP}#{SAN}#{VOLUME_GROUP}#{unique_name('gone')}"
    vsc, vs_name = _import(kube, namespace, missing, "Retain")

    def error() -> str | None:
        message: str | None = (
            ((kube.snapshot(namespace, vs_name) or {}).get("status") or {}).get("error") or {}
        ).get("message")
        return message

    message = wait_for("an error on the imported VolumeSnapshot", error, 90)
    assert missing.rsplit("#", 1)[1] in message
    assert not ((kube.content(vsc) or {}).get("status") or {}).get("readyToUse")
    kube.delete_snapshot(namespace, vs_name)
    wait_for("the VolumeSnapshot to go", lambda: kube.snapshot(namespace, vs_name) is None, 90)
    kube.custom.delete_cluster_custom_object(SNAPSHOTS, "v1", "volumesnapshotcontents", vsc)
    wait_for("the content to go", lambda: kube.content(vsc) is None, 90)
