"""The real Velero v1.18.0 backing up claims labelled for a volume group (``velero.io/volume-group``).

Velero 1.18.0 makes a VolumeGroupSnapshot (through ``groupsnapshot.storage.k8s.io/v1beta1``) over
the claims that share a ``velero.io/volume-group`` value, then waits for member VolumeSnapshots
owned by it, comparing the owner reference's apiVersion with ``groupsnapshot.storage.k8s.io/v1beta1``
exactly. snapshot-controller v8.6.0 writes ``groupsnapshot.storage.k8s.io/v1``, so Velero never
finds the members and the backup ends PartiallyFailed, although the group was cut. These tests pin
that: what the operator does (one Elastic SAN snapshot per member, members ready), where Velero
stops, and what a user must clean up afterwards; and the way around it: with another group label
key, Velero backs the same claims up one VolumeSnapshot each and restores every one of them.
Docs: docs/install.md, "Velero and volume groups".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from content_scenario import checksums, mount_claim, write_files
from group_scenario import GROUPS, GROUPS_VERSION, Groups, group_snapshots
from operator_scenario import Kube, snapshots_of, unique_name
from test_velero_backups import remove_namespace_and_volumes, restored_volume
from velero_stack import NAMESPACE as VELERO_NAMESPACE
from velero_stack import VELERO_GROUP, VELERO_VERSION, VeleroObjects

from elasticsan_snapshotter.local_cluster.node import NodeStandIn
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess
from waiting import wait_for

VOLUME_GROUP_LABEL = "velero.io/volume-group"
GROUP_CLASS_LABEL = "velero.io/csi-volumegroupsnapshot-class"
GROUP_CLASS_ANNOTATION = "velero.io/csi-volume-group-snapshot-class"
SERVED_OWNER_VERSION = f"{GROUPS}/{GROUPS_VERSION}"  # what snapshot-controller v8.6.0 writes
VELERO_OWNER_VERSION = f"{GROUPS}/v1beta1"  # what Velero v1.18.0 looks for
MEMBER_WAIT = "timeout waiting for VolumeSnapshots associated with VGS"
FILES = ["a.bin", "b.bin"]

pytestmark = pytest.mark.usefixtures("velero_artifacts")


@pytest.fixture
def velero_group_class(kube: Kube) -> Iterator[str]:
    """A group class of the iSCSI driver with the label Velero picks group classes by."""
    name = unique_name("esan-velero-group")
    Groups(kube, "default").create_class(name, "Delete")
    kube.custom.patch_cluster_custom_object(
        GROUPS,
        GROUPS_VERSION,
        "volumegroupsnapshotclasses",
        name,
        {"metadata": {"labels": {GROUP_CLASS_LABEL: "true"}}},
    )
    try:
        yield name
    finally:
        kube.custom.delete_cluster_custom_object(GROUPS, GROUPS_VERSION, "volumegroupsnapshotclasses", name)


def groups_of_backup(kube: Kube, namespace: str, backup: str) -> list[dict[str, Any]]:
    listed = kube.custom.list_namespaced_custom_object(
        GROUPS,
        GROUPS_VERSION,
        namespace,
        "volumegroupsnapshots",
        label_selector=f"velero.io/backup-name={backup}",
    )
    return list(listed["items"])


def labelled_claims(kube: Kube, groups: Groups, source_volume: Callable[..., Any]) -> dict[str, Any]:
    """Two claims in group ``db`` with the classes Velero picks; claim name to Elastic SAN volume."""
    storage_class = unique_name("esan")
    kube.create_storage_class(storage_class)
    kube.create_snapshot_class(unique_name("esan-snap"))
    return dict(groups.labelled_claims(source_volume, storage_class, 2, {VOLUME_GROUP_LABEL: "db"}))


def test_a_group_backup_is_cut_but_velero_1_18_0_misses_the_v1_members(
    operator: OperatorProcess,
    velero: VeleroObjects,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
    velero_group_class: str,
) -> None:
    groups = Groups(kube, namespace)
    claims = labelled_claims(kube, groups, source_volume)
    sources = {volume.id.lower() for volume in claims.values()}
    # Named on the claims too: other tests of the same cluster may leave labelled group classes
    # of the same driver, and Velero refuses to choose among several.
    for claim in claims:
        kube.core.patch_namespaced_persistent_volume_claim(
            claim, namespace, {"metadata": {"annotations": {GROUP_CLASS_ANNOTATION: velero_group_class}}}
        )

    name = unique_name("grouped")
    # Velero waits this long for the members before it gives up on the group.
    velero.stack.cli(
        "backup",
        "create",
        name,
        f"--include-namespaces={namespace}",
        "--snapshot-volumes=true",
        "--csi-snapshot-timeout=20s",
    )
    backup = velero.wait_phase("backups", name, {"Completed"})
    status = backup["status"]
    assert status["phase"] == "PartiallyFailed", status
    assert status.get("errors", 0) >= 1, status
    assert MEMBER_WAIT in velero.stack.cli("backup", "logs", name)
    assert not status.get("csiVolumeSnapshotsCompleted"), status

    # The operator's side is done: every group Velero made is ready, one Elastic SAN snapshot per
    # member cut by the group path, and member VolumeSnapshots carry all that Velero waits for
    # except the owner reference's version.
    made = groups_of_backup(kube, namespace, name)
    assert made, "Velero made no VolumeGroupSnapshot"
    handles = []
    for vgs in made:
        vgs_name = vgs["metadata"]["name"]
        assert vgs["spec"]["volumeGroupSnapshotClassName"] == velero_group_class
        assert vgs["spec"]["source"]["selector"]["matchLabels"] == {VOLUME_GROUP_LABEL: "db"}
        groups.wait_ready(vgs_name)
        members = groups.wait_members_ready(vgs_name, len(claims))
        assert {m["spec"]["source"]["persistentVolumeClaimName"] for m in members} == set(claims)
        for member in members:
            assert member["status"]["volumeGroupSnapshotName"] == vgs_name
            versions = {ref["apiVersion"] for ref in member["metadata"]["ownerReferences"]}
            assert versions == {SERVED_OWNER_VERSION} != {VELERO_OWNER_VERSION}
        handle = groups.content_of(vgs_name)["status"]["volumeGroupSnapshotHandle"]
        cut = group_snapshots(esan, f"{handle}-")
        assert {s.creation_data.source_id.lower() for s in cut} == sources
        assert len(cut) == len(claims)
        handles.append(handle)

    # Velero neither cleans up the groups it gave up on nor knows them when the backup goes.
    velero.stack.cli("backup", "delete", name, "--confirm")
    wait_for("the Backup to go", lambda: velero.get("backups", name) is None, timeout=180, interval=1.0)
    assert {g["metadata"]["name"] for g in groups_of_backup(kube, namespace, name)} == {
        g["metadata"]["name"] for g in made
    }
    assert all(len(group_snapshots(esan, f"{h}-")) == len(claims) for h in handles)

    # Deleting them (class policy Delete) removes their Elastic SAN snapshots.
    for vgs in made:
        groups.delete(vgs["metadata"]["name"])
    wait_for(
        "the groups' Elastic SAN snapshots to go",
        lambda: not any(group_snapshots(esan, f"{h}-") for h in handles),
        timeout=180,
    )
    wait_for("the groups to go", lambda: not groups_of_backup(kube, namespace, name), timeout=120)


def test_with_another_group_label_key_each_labelled_claim_is_backed_up_and_restored_alone(
    operator: OperatorProcess,
    velero: VeleroObjects,
    node: NodeStandIn,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
    velero_group_class: str,
) -> None:
    groups = Groups(kube, namespace)
    claims = labelled_claims(kube, groups, source_volume)
    pvs = [kube.core.read_namespaced_persistent_volume_claim(c, namespace).spec.volume_name for c in claims]
    mounts = {c: mount_claim(node, kube, namespace, c) for c in claims}
    backed_up = {c: write_files(m, FILES) for c, m in mounts.items()}

    # What the server flag --volume-group-snapshot-label-key sets for every backup, for one backup.
    name = unique_name("ungrouped")
    kube.custom.create_namespaced_custom_object(
        VELERO_GROUP,
        VELERO_VERSION,
        VELERO_NAMESPACE,
        "backups",
        {
            "apiVersion": f"{VELERO_GROUP}/{VELERO_VERSION}",
            "kind": "Backup",
            "metadata": {"name": name, "namespace": VELERO_NAMESPACE},
            "spec": {
                "includedNamespaces": [namespace],
                "snapshotVolumes": True,
                "volumeGroupSnapshotLabelKey": "example.com/no-such-group",
            },
        },
    )
    status = velero.wait_phase("backups", name, {"Completed"})["status"]
    assert status["phase"] == "Completed", status
    assert status.get("warnings", 0) == 0, velero.stack.cli("backup", "logs", name)
    assert status.get("csiVolumeSnapshotsCompleted") == status.get("csiVolumeSnapshotsAttempted") == 2
    assert groups_of_backup(kube, namespace, name) == []
    for volume in claims.values():
        [snapshot] = snapshots_of(esan, volume.name)
        assert not snapshot.name.startswith("group-")
    for mount in mounts.values():
        node.unpublish(mount)

    remove_namespace_and_volumes(kube, namespace, *pvs)
    restore = velero.restore(unique_name("restore"), name)
    assert restore["status"]["phase"] == "Completed", restore["status"]
    for claim, volume in claims.items():
        new_volume = restored_volume(kube, esan, namespace, claim)
        assert new_volume.creation_data.source_id.lower() == snapshots_of(esan, volume.name)[0].id.lower()
        restored = mount_claim(node, kube, namespace, claim)
        assert not restored.formatted
        assert checksums(restored, FILES) == backed_up[claim]
