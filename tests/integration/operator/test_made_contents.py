"""Contents the operator makes ahead of snapshot-controller, with the real snapshot-controller.

snapshot-controller is paused (SIGSTOP) while the VolumeSnapshot is created, as one far behind
in a burst would be, so the operator makes the content for certain; then it goes on and must
bind that content as its own. Deleted while it is paused, the VolumeSnapshot has none of its
finalizers and goes at once: the case in which snapshot-controller never sees the content and
the operator must release it. Bound while it is paused, as snapshot-controller binds it when its
own create met ours before its cache had ours (and then never takes up the content's readiness),
the VolumeSnapshot makes the operator hand the content back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from azure.mgmt.elasticsan import ElasticSanMgmtClient
from operator_scenario import Kube, snapshots_of, static_claim, unique_name, wait_for

from elasticsan_snapshotter.local_cluster import LocalCluster
from elasticsan_snapshotter.local_cluster.operator_process import OperatorProcess


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    """Making contents is on by default; a short take-up timeout lets a test see a hand-back."""
    return start_operator(ESS_CONTENT_TAKE_UP_TIMEOUT=str(TAKE_UP_TIMEOUT))


TAKE_UP_TIMEOUT = 3


MADE = "elasticsan.snapshotter.dev/made-by-driver"
BEING_CREATED = "snapshot.storage.kubernetes.io/volumesnapshot-being-created"
BEING_DELETED = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"
BOUND_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"


def _classes(kube: Kube, namespace: str, volume: Any, policy: str) -> str:
    storage_class, snapshot_class = unique_name("esan"), unique_name("esan-snap")
    kube.create_storage_class(storage_class)
    kube.create_snapshot_class(snapshot_class, policy)
    static_claim(kube, namespace, volume, storage_class)
    return snapshot_class


def _made_and_ready(kube: Kube, vs: dict[str, Any]) -> dict[str, Any]:
    name = f"snapcontent-{vs['metadata']['uid']}"

    def ready() -> dict[str, Any] | None:
        content = kube.content(name)
        return content if content and (content.get("status") or {}).get("readyToUse") else None

    content = wait_for(f"the operator to make and cut {name}", ready)
    assert content["metadata"]["annotations"].get(MADE) == "yes"
    return content


def test_snapshot_controller_binds_the_content_the_operator_made(
    operator: OperatorProcess,
    cluster: LocalCluster,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    snapshot_class = _classes(kube, namespace, volume, "Delete")
    with cluster.paused("snapshot-controller"):
        vs = kube.create_snapshot(namespace, "snap", "data", snapshot_class=snapshot_class)
        content = _made_and_ready(kube, vs)
        paused_vs = kube.snapshot(namespace, "snap")
        assert paused_vs is not None
        assert not paused_vs.get("status")  # only snapshot-controller writes it
    spec = content["spec"]
    assert spec["volumeSnapshotRef"]["uid"] == vs["metadata"]["uid"]
    assert (spec["driver"], spec["volumeSnapshotClassName"], spec["deletionPolicy"]) == (
        "elasticsan.snapshotter.dev",
        snapshot_class,
        "Delete",
    )
    assert content["metadata"]["finalizers"] == [BOUND_FINALIZER]
    assert BEING_CREATED not in content["metadata"]["annotations"]

    ready = kube.wait_snapshot_ready(namespace, "snap")
    assert ready["status"]["boundVolumeSnapshotContentName"] == content["metadata"]["name"]
    assert ready["status"]["restoreSize"] == "10Gi"
    assert set(ready["metadata"]["finalizers"]) >= {
        "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection",
        "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection",
    }
    # It bound ours: it never announced a content of its own.
    assert "CreatingSnapshot" not in {e.reason for e in kube.events(namespace, "snap")}
    assert len(snapshots_of(esan, volume.name)) == 1

    # And deletes it as its own, with the Azure snapshot.
    kube.delete_snapshot(namespace, "snap")
    wait_for("the VolumeSnapshot to go", lambda: kube.snapshot(namespace, "snap") is None)
    wait_for("the content to go", lambda: kube.content(content["metadata"]["name"]) is None)
    assert snapshots_of(esan, volume.name) == []


def test_a_snapshot_deleted_before_snapshot_controller_saw_the_content_leaves_nothing(
    operator: OperatorProcess,
    cluster: LocalCluster,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    snapshot_class = _classes(kube, namespace, volume, "Delete")
    with cluster.paused("snapshot-controller"):
        vs = kube.create_snapshot(namespace, "snap", "data", snapshot_class=snapshot_class)
        content = _made_and_ready(kube, vs)
        assert len(snapshots_of(esan, volume.name)) == 1
        kube.delete_snapshot(namespace, "snap")
        wait_for("the VolumeSnapshot to go", lambda: kube.snapshot(namespace, "snap") is None)
        wait_for(
            "the operator to delete the content", lambda: kube.content(content["metadata"]["name"]) is None
        )
        assert snapshots_of(esan, volume.name) == []
        # Events of cluster-scoped objects go to the default namespace.
        assert "ContentReleased" in {e.reason for e in kube.events("default", content["metadata"]["name"])}


def test_with_policy_retain_the_content_of_a_snapshot_deleted_early_stays(
    operator: OperatorProcess,
    cluster: LocalCluster,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    snapshot_class = _classes(kube, namespace, volume, "Retain")
    with cluster.paused("snapshot-controller"):
        vs = kube.create_snapshot(namespace, "snap", "data", snapshot_class=snapshot_class)
        content = _made_and_ready(kube, vs)
        kube.delete_snapshot(namespace, "snap")
        wait_for("the VolumeSnapshot to go", lambda: kube.snapshot(namespace, "snap") is None)
    name = content["metadata"]["name"]
    # Given time to act (it handles the DELETED event within a second), the operator keeps it.
    time.sleep(3)
    kept = kube.content(name)
    assert kept is not None
    assert kept["metadata"].get("deletionTimestamp") is None
    assert kept["metadata"]["annotations"].get(BEING_DELETED) == "yes"
    assert len(snapshots_of(esan, volume.name)) == 1
    kube.custom.delete_cluster_custom_object("snapshot.storage.k8s.io", "v1", "volumesnapshotcontents", name)
    wait_for("the content to go", lambda: kube.content(name) is None)
    assert len(snapshots_of(esan, volume.name)) == 1  # Retain: Azure untouched


def test_a_content_bound_but_never_taken_up_is_handed_back_and_snapshot_controller_makes_its_own(
    operator: OperatorProcess,
    cluster: LocalCluster,
    esan: ElasticSanMgmtClient,
    kube: Kube,
    namespace: str,
    source_volume: Callable[..., Any],
) -> None:
    volume = source_volume(10)
    snapshot_class = _classes(kube, namespace, volume, "Delete")
    with cluster.paused("snapshot-controller"):
        vs = kube.create_snapshot(namespace, "snap", "data", snapshot_class=snapshot_class)
        content = _made_and_ready(kube, vs)
        name = content["metadata"]["name"]
        # The status snapshot-controller v8.6.0 writes, and then keeps, when its create met ours
        # before its cache had ours: bound, never ready.
        kube.custom.patch_namespaced_custom_object_status(
            "snapshot.storage.k8s.io",
            "v1",
            namespace,
            "volumesnapshots",
            "snap",
            {"status": {"boundVolumeSnapshotContentName": name, "readyToUse": False}},
        )
        wait_for("the operator to hand the content back", lambda: kube.content(name) is None, timeout=60)
        assert snapshots_of(esan, volume.name) == []
        assert "ContentNotTakenUp" in {e.reason for e in kube.events(namespace, "snap")}
        time.sleep(TAKE_UP_TIMEOUT)  # the bound VolumeSnapshot gets no second made content
        assert kube.content(name) is None
    # Going on, snapshot-controller finds no content in its cache and makes its own.
    ready = kube.wait_snapshot_ready(namespace, "snap")
    assert ready["status"]["boundVolumeSnapshotContentName"] == name
    remade = kube.content(name)
    assert remade is not None
    assert MADE not in (remade["metadata"].get("annotations") or {})
    assert remade["metadata"]["uid"] != content["metadata"]["uid"]
    assert "CreatingSnapshot" in {e.reason for e in kube.events(namespace, "snap")}
    assert len(snapshots_of(esan, volume.name)) == 1
    kube.delete_snapshot(namespace, "snap")
    wait_for("the content to go", lambda: kube.content(name) is None)
    assert snapshots_of(esan, volume.name) == []
