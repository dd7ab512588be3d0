"""VolumeGroupSnapshots of Elastic SAN volumes, end to end: one request, every member cut, restorable per member.

Checked: the Azure side (one snapshot per member, its source, its name), the Kubernetes objects,
and what each restored member holds (files on real ext4 file systems, mounted by the node stand-in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import content_scenario as contents
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from group_scenario import (
    BEING_CREATED,
    GIB,
    GROUP_DRIVER,
    MEMBER_HANDLE,
    Groups,
    compact,
    exposed_metrics,
    group_snapshots,
    snapshot_handle,
)
from operator_scenario import RESOURCE_GROUP, SAN, VOLUME_GROUP, Kube, unique_name, wait_for

from elasticsan_snapshotter.emulator.process import EmulatorProcess
from elasticsan_snapshotter.local_cluster.node import NodeStandIn
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess

CONSISTENCY = "elasticsan.snapshotter.dev/consistency"
CUT_WINDOW = "elasticsan.snapshotter.dev/cut-window-seconds"
FILES = ["a.bin", "b.bin"]


def test_three_claims_one_group_every_member_cut_restored_and_deleted(
    operator: OperatorProcess,
    emulator: EmulatorProcess,
    node: NodeStandIn,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups = Groups(kube, namespace)
    storage_class, group_class = groups.classes("Delete", consistency="CrashConsistentPerVolume")
    claims = groups.labelled_claims(source_volume, storage_class, 3, {"app": "db"})
    pvs = {
        c: kube.core.read_namespaced_persistent_volume_claim(c, namespace).spec.volume_name for c, _ in claims
    }
    handles = {c: kube.core.read_persistent_volume(pv).spec.csi.volume_handle for c, pv in pvs.items()}
    # Each member gets files of its own (random, so no two members hold the same).
    mounts = {c: contents.mount_claim(node, kube, namespace, c) for c, _ in claims}
    at_cut = {c: contents.write_files(mount, FILES) for c, mount in mounts.items()}
    assert len({frozenset(sums.values()) for sums in at_cut.values()}) == len(claims)
    emulator.admin.reset_counters()

    groups.create("db", group_class, {"app": "db"})
    vgs = groups.wait_ready("db")
    # Written after the cut: no restore may show these.
    after_cut = {c: contents.write_files(mount, FILES) for c, mount in mounts.items()}
    assert all(after_cut[c] != at_cut[c] for c in mounts)

    content = groups.content_of("db")
    assert content["metadata"]["name"] == f"groupsnapcontent-{vgs['metadata']['uid']}"
    status = content["status"]
    handle = status["volumeGroupSnapshotHandle"]
    assert handle.startswith("group-")
    assert len(handle.encode()) <= 128
    assert status["readyToUse"] is True
    assert "error" not in status
    assert status["creationTime"].endswith("Z")
    annotations = content["metadata"].get("annotations") or {}
    assert BEING_CREATED not in annotations
    assert annotations[CONSISTENCY] == "CrashConsistentPerVolume"
    assert float(annotations[CUT_WINDOW]) >= 0.0

    # Azure: exactly one snapshot per member, named after the group, taken from that member.
    in_azure = group_snapshots(esan, f"{handle}-")
    assert len(in_azure) == 3
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots") == 3
    by_source = {s.creation_data.source_id.lower(): s for s in in_azure}
    volumes = dict(claims)
    assert sorted(by_source) == sorted(v.id.lower() for v in volumes.values())

    # The info list names every member: its volume handle, its snapshot, its size and time.
    entries = {e["volumeHandle"]: e for e in status["volumeSnapshotInfoList"]}
    assert sorted(entries) == sorted(handles.values())
    for claim, volume in claims:
        entry = entries[handles[claim]]
        snapshot = by_source[volume.id.lower()]
        assert entry["snapshotHandle"] == snapshot_handle(snapshot)
        assert entry["readyToUse"] is True
        assert entry["restoreSize"] == 10 * GIB
        assert isinstance(entry["creationTime"], int)

    # snapshot-controller made one member VolumeSnapshot per volume; each is ready.
    members = groups.wait_members_ready("db", 3)
    claims_of_members = sorted(vs["spec"]["source"]["persistentVolumeClaimName"] for vs in members)
    assert claims_of_members == sorted(c for c, _ in claims)
    for vs in members:  # members have no class by design: nothing to warn about
        assert not [e for e in kube.events(namespace, vs["metadata"]["name"]) if e.type == "Warning"]
    cut = kube.wait_event(namespace, "db", "GroupSnapshotCut")
    assert "CrashConsistentPerVolume" in cut.message
    assert "3 member snapshot(s)" in cut.message
    exposed = exposed_metrics(operator)
    assert exposed['elasticsan_snapshotter_group_snapshots_total{result="Ready"}'] >= 1
    assert exposed["elasticsan_snapshotter_group_snapshot_members_sum"] >= 3
    assert exposed["elasticsan_snapshotter_group_snapshot_cut_window_seconds_count"] >= 1

    # Each member restores like a single snapshot: a new volume made from that member's snapshot.
    for vs in members:
        member_content = kube.content(vs["status"]["boundVolumeSnapshotContentName"])
        assert member_content is not None
        assert member_content["spec"]["driver"] == GROUP_DRIVER
        assert member_content["metadata"]["annotations"][MEMBER_HANDLE] == handle
        source_claim = vs["spec"]["source"]["persistentVolumeClaimName"]
        restored_name = f"restored-{source_claim}"
        kube.create_claim(namespace, restored_name, storage_class, "10Gi", snapshot=vs["metadata"]["name"])
        restored = kube.wait_claim_bound(namespace, restored_name)
        new_volume = esan.volumes.get(RESOURCE_GROUP, SAN, VOLUME_GROUP, f"pvc-{restored.metadata.uid}")
        assert new_volume.creation_data.create_source == "VolumeSnapshot"
        expected = by_source[volumes[source_claim].id.lower()]
        assert new_volume.creation_data.source_id.lower() == expected.id.lower()

    # Each restored member holds exactly what its own volume held at the cut.
    for claim, _ in claims:
        restored_mount = contents.mount_claim(node, kube, namespace, f"restored-{claim}")
        assert not restored_mount.formatted  # the member snapshot's file system, not a new one
        assert contents.checksums(restored_mount, FILES) == at_cut[claim]
        assert contents.checksums(mounts[claim], FILES) == after_cut[claim]

    # Policy Delete: deleting the group deletes every member snapshot, then the objects go.
    groups.delete("db")
    wait_for(
        "the member snapshots to be deleted in Azure", lambda: not group_snapshots(esan, f"{handle}-"), 90
    )
    wait_for("the group content to go", lambda: groups.content(content["metadata"]["name"]) is None, 90)
    wait_for(
        "the member VolumeSnapshots to go", lambda: not groups.members("db") and groups.get("db") is None, 90
    )


def test_retain_keeps_members_and_member_contents_never_delete_in_azure(
    operator: OperatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups = Groups(kube, namespace)
    storage_class, group_class = groups.classes("Retain")
    groups.labelled_claims(source_volume, storage_class, 2, {"app": "kept"})
    groups.create("kept", group_class, {"app": "kept"})
    groups.wait_ready("kept")
    content_name = groups.content_of("kept")["metadata"]["name"]
    handle = groups.content_of("kept")["status"]["volumeGroupSnapshotHandle"]
    member_contents = [
        vs["status"]["boundVolumeSnapshotContentName"] for vs in groups.wait_members_ready("kept", 2)
    ]

    groups.delete("kept")
    wait_for("the group snapshot to go", lambda: groups.get("kept") is None, 90)
    # Retain: the group content and the member contents stay, and so do the snapshots.
    assert groups.content(content_name) is not None
    assert len(group_snapshots(esan, f"{handle}-")) == 2

    # Deleting a retained member content releases it without touching Azure.
    first = member_contents[0]
    wait_for(
        "snapshot-controller to mark the member content being deleted",
        lambda: (
            "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"
            in ((kube.content(first) or {}).get("metadata", {}).get("annotations") or {})
        ),
        60,
    )
    kube.custom.delete_cluster_custom_object("snapshot.storage.k8s.io", "v1", "volumesnapshotcontents", first)
    wait_for("the member content to go", lambda: kube.content(first) is None, 60)
    assert len(group_snapshots(esan, f"{handle}-")) == 2

    # Deleting the retained group content itself keeps the snapshots too.
    kube.custom.delete_cluster_custom_object(
        "groupsnapshot.storage.k8s.io", "v1", "volumegroupsnapshotcontents", content_name
    )
    wait_for("the group content to go", lambda: groups.content(content_name) is None, 60)
    assert len(group_snapshots(esan, f"{handle}-")) == 2
    for snapshot in group_snapshots(esan, f"{handle}-"):
        esan.volume_snapshots.begin_delete(RESOURCE_GROUP, SAN, VOLUME_GROUP, snapshot.name).result()


def test_pre_provisioned_group_is_bound_and_ready_once_every_member_exists(
    operator: OperatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups = Groups(kube, namespace)
    handle = "group-" + "ab" * 12
    names = []
    for volume in (source_volume(10), source_volume(10)):
        name = f"{handle}-{volume.name.replace('vol-', '')}{'0' * 8}"
        esan.volume_snapshots.begin_create(
            RESOURCE_GROUP, SAN, VOLUME_GROUP, name, {"properties": {"creationData": {"sourceId": volume.id}}}
        ).result()
        names.append(name)
    content_name = unique_name("imported-group")

    def content(snapshot_names: list[str], name: str, group_snapshot: str) -> dict[str, Any]:
        return {
            "apiVersion": "groupsnapshot.storage.k8s.io/v1",
            "kind": "VolumeGroupSnapshotContent",
            "metadata": {"name": name},
            "spec": {
                "driver": GROUP_DRIVER,
                "deletionPolicy": "Retain",
                "source": {
                    "groupSnapshotHandles": {
                        "volumeGroupSnapshotHandle": handle,
                        "volumeSnapshotHandles": [compact(n) for n in snapshot_names],
                    }
                },
                "volumeGroupSnapshotRef": {"name": group_snapshot, "namespace": namespace},
            },
        }

    kube.custom.create_cluster_custom_object(
        "groupsnapshot.storage.k8s.io",
        "v1",
        "volumegroupsnapshotcontents",
        content(names, content_name, "imported"),
    )
    groups.create("imported", None, content=content_name)
    wait_for(
        "the imported group to be bound and ready",
        lambda: (groups.get("imported") or {}).get("status", {}).get("readyToUse"),
        90,
    )
    imported = groups.content(content_name)
    assert imported is not None
    assert imported["status"]["volumeGroupSnapshotHandle"] == handle
    assert imported["spec"]["volumeGroupSnapshotRef"]["uid"] == groups.get("imported")["metadata"]["uid"]  # type: ignore[index]

    # A member that does not exist is a final error, not a crash.
    missing = unique_name("missing-group")
    kube.custom.create_cluster_custom_object(
        "groupsnapshot.storage.k8s.io",
        "v1",
        "volumegroupsnapshotcontents",
        content([names[0], f"{handle}-{'f' * 16}"], missing, "nobody"),
    )
    wait_for(
        "an error naming the missing member",
        lambda: (
            "does not exist"
            in (((groups.content(missing) or {}).get("status") or {}).get("error") or {}).get("message", "")
        ),
        60,
    )
    # Retain: the group snapshot goes, then the contents, and the snapshots stay.
    groups.delete("imported")
    wait_for("the imported group snapshot to go", lambda: groups.get("imported") is None, 60)
    for name in (content_name, missing):
        kube.custom.delete_cluster_custom_object(
            "groupsnapshot.storage.k8s.io", "v1", "volumegroupsnapshotcontents", name
        )
        wait_for(f"group content {name} to go", lambda name=name: groups.content(name) is None, 60)
    assert len(group_snapshots(esan, f"{handle}-")) == 2
    for name in names:
        esan.volume_snapshots.begin_delete(RESOURCE_GROUP, SAN, VOLUME_GROUP, name).result()


def test_bad_input_is_a_clear_error_on_the_group_snapshot_and_nothing_is_cut(
    operator: OperatorProcess,
    emulator: EmulatorProcess,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    groups = Groups(kube, namespace)
    storage_class, group_class = groups.classes()
    odd_class = unique_name("odd")
    groups.create_class(odd_class, speed="fast")
    groups.labelled_claims(source_volume, storage_class, 1, {"app": "fine"})
    # A claim of another CSI driver, and a claim that is not bound, each labelled into a group.
    kube.storage.create_storage_class(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": f"{storage_class}-other"},
            "provisioner": "other.csi.example.com",
            "volumeBindingMode": "Immediate",
        }
    )
    other_pv = unique_name("other-pv")
    kube.core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": other_pv},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": f"{storage_class}-other",
                "csi": {"driver": "other.csi.example.com", "volumeHandle": other_pv},
            },
        }
    )
    groups.claim("foreign", f"{storage_class}-other", {"app": "mixed"}, volume_name=other_pv)
    kube.wait_claim_bound(namespace, "foreign")
    groups.claim("pending", "no-such-class", {"app": "unbound"})
    emulator.admin.reset_counters()

    cases = {
        "nothing": ({"app": "nobody"}, group_class, "not applied to any PVC"),
        "mixed": ({"app": "mixed"}, group_class, "mismatch with VolumeGroupSnapshotClass"),
        "unbound": ({"app": "unbound"}, group_class, "not yet bound"),
        "odd": ({"app": "fine"}, odd_class, "unknown VolumeGroupSnapshotClass parameter(s) speed"),
    }
    for name, (labels, cls, _) in cases.items():
        groups.create(name, cls, labels)
    for name, (_, _, said) in cases.items():
        groups.wait_error(name, said)
    # The refused class never reached Azure, nor did the others.
    odd = groups.content_of("odd")
    assert "volumeGroupSnapshotHandle" not in odd["status"]
    assert BEING_CREATED not in (odd["metadata"].get("annotations") or {})
    assert emulator.admin.count(method="PUT", kind="volumeSnapshots") == 0
    for name in cases:
        groups.delete(name)
