"""The group snapshotter's algorithm over the in-memory Azure port and the in-memory API stand-in.

The integration tests run the same paths against the real control plane and the emulator;
these pin the decisions (adopt, clean up, refuse, publish once) quickly and exactly.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.domain import groups
from elasticsan_snapshotter.domain.decisions import SnapshotFailed
from elasticsan_snapshotter.domain.errors import Transient
from elasticsan_snapshotter.domain.identity import ElasticSanId, VolumeId
from elasticsan_snapshotter.domain.mapping import VOLUME_ID_ANNOTATION, SanIndex
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.events import EventRecorder
from elasticsan_snapshotter.kubernetes.group_members import GroupMemberReconciler
from elasticsan_snapshotter.kubernetes.group_snapshotter import GroupContentReconciler
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_BEING_DELETED,
    ANN_GROUP_BEING_CREATED,
    ANN_GROUP_BEING_DELETED,
    ANN_GROUP_CONSISTENCY,
    ANN_GROUP_CUT_WINDOW,
    ANN_GROUP_MEMBER_HANDLE,
    FIN_CONTENT_BOUND,
    FIN_GROUP_CONTENT_BOUND,
)
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store
from elasticsan_snapshotter.kubernetes.workqueue import Requeue
from kube_stand_in import KubeStandIn

pytestmark = pytest.mark.unit

SUB = "sub"
SAN = ElasticSanId(SUB, "rg", "san1")
VG = SAN.volume_group("vg1")
CONTENT = "groupsnapcontent-1"
CONTENT_UID = "c0ffee00-0000-0000-0000-00000000c0de"
HANDLE = groups.group_handle(CONTENT_UID)


class World:
    def __init__(self, volumes: int = 3) -> None:
        self.azure = InMemoryAzure()
        self.azure.add_elastic_san(SAN)
        self.azure.add_volume_group(VG)
        self.kube = KubeStandIn()
        api = cast(KubeApi, self.kube)
        self.volumes = [VG.volume(f"vol{i}") for i in range(volumes)]
        for i, volume in enumerate(self.volumes):
            self.azure.add_volume(volume, 10)
            self.kube.put(
                "persistentvolumes",
                {
                    "metadata": {"name": f"pv{i}", "annotations": {VOLUME_ID_ANNOTATION: volume.arm_id}},
                    "spec": {"csi": {"driver": groups.GROUP_DRIVER_NAME, "volumeHandle": f"iscsi-pv{i}"}},
                },
            )
        self.contents = Store()
        self.classes = Store()
        common: dict[str, Any] = {
            "driver_name": "elasticsan.snapshotter.dev",
            "subscription": SUB,
            "api": api,
            "azure": self.azure,
            "recorder": EventRecorder(api),
        }
        self.reconciler = GroupContentReconciler(
            **common,
            group_driver_name=groups.GROUP_DRIVER_NAME,
            index=SanIndex(self.azure, [SAN]),
            group_contents=self.contents,
            group_classes=self.classes,
            volumes=PersistentVolumes(api),
        )
        self.members = Store()
        self.member_reconciler = GroupMemberReconciler(
            **common, group_driver_name=groups.GROUP_DRIVER_NAME, members=self.members
        )
        self.put_content(
            {
                "apiVersion": "groupsnapshot.storage.k8s.io/v1",
                "kind": "VolumeGroupSnapshotContent",
                "metadata": {"name": CONTENT, "uid": CONTENT_UID, "finalizers": [FIN_GROUP_CONTENT_BOUND]},
                "spec": {
                    "driver": groups.GROUP_DRIVER_NAME,
                    "deletionPolicy": "Delete",
                    "source": {"volumeHandles": [f"iscsi-pv{i}" for i in range(volumes)]},
                    "volumeGroupSnapshotRef": {"name": "db", "namespace": "ns", "uid": "vgs-uid"},
                },
            }
        )

    def put_content(self, body: Body) -> None:
        self.kube.put("volumegroupsnapshotcontents", body)
        self.contents.apply("ADDED", copy.deepcopy(body))

    def stored_member(self, member: Body) -> Body:
        """The stored member content itself: it shows every write the reconciler makes."""
        return self.kube.objects[("volumesnapshotcontents", "", member["metadata"]["name"])]

    def content(self) -> Body:
        return self.kube.objects[("volumegroupsnapshotcontents", "", CONTENT)]

    async def reconcile(self) -> Requeue | None:
        self.contents.apply("MODIFIED", copy.deepcopy(self.content()))
        return await self.reconciler.reconcile(CONTENT)

    async def members_in_azure(self) -> list[str]:
        return sorted(
            s.id.name for s in await self.azure.list_snapshots(VG) if groups.is_member(HANDLE, s.id)
        )

    def member_name(self, volume: VolumeId) -> str:
        return groups.member_snapshot_name(HANDLE, volume)


async def test_a_group_is_cut_and_published_in_one_status_write() -> None:
    world = World()
    assert await world.reconcile() is None
    content = world.content()
    status = content["status"]
    assert status["volumeGroupSnapshotHandle"] == HANDLE
    assert status["readyToUse"] is True
    assert [e["volumeHandle"] for e in status["volumeSnapshotInfoList"]] == [
        "iscsi-pv0",
        "iscsi-pv1",
        "iscsi-pv2",
    ]
    assert [e["snapshotHandle"] for e in status["volumeSnapshotInfoList"]] == [
        f"rg#san1#vg1#{world.member_name(v)}" for v in world.volumes
    ]
    assert all(e["restoreSize"] == 10 * 2**30 for e in status["volumeSnapshotInfoList"])
    annotations = content["metadata"]["annotations"]
    assert ANN_GROUP_BEING_CREATED not in annotations
    assert annotations[ANN_GROUP_CONSISTENCY] == groups.CRASH_CONSISTENT_PER_VOLUME
    assert float(annotations[ANN_GROUP_CUT_WINDOW]) >= 0
    assert await world.members_in_azure() == sorted(world.member_name(v) for v in world.volumes)
    # Annotation on, one status write, annotation off (with the level): three writes in all.
    assert world.kube.writes == [
        ("volumegroupsnapshotcontents", CONTENT, "main"),
        ("volumegroupsnapshotcontents", CONTENT, "status"),
        ("volumegroupsnapshotcontents", CONTENT, "main"),
    ]
    # A second pass changes nothing.
    assert await world.reconcile() is None
    assert len(world.kube.writes) == 3


async def test_a_restart_adopts_the_members_cut_before_it() -> None:
    world = World()
    earlier = datetime(2026, 1, 1, tzinfo=UTC)
    first = world.volumes[0]
    world.azure.add_snapshot(VG.snapshot(world.member_name(first)), first, created_at=earlier)
    world.content()["metadata"]["annotations"] = {ANN_GROUP_BEING_CREATED: "yes"}
    assert await world.reconcile() is None
    assert await world.members_in_azure() == sorted(world.member_name(v) for v in world.volumes)
    adopted = world.content()["status"]["volumeSnapshotInfoList"][0]
    assert adopted["creationTime"] == int(earlier.timestamp()) * 10**9
    assert world.content()["status"]["creationTime"] == "2026-01-01T00:00:00Z"


async def test_a_transient_member_failure_keeps_the_others_for_the_next_attempt() -> None:
    world = World()
    world.azure.fail_next("create_snapshot", Transient("busy", retry_after=3.0))
    outcome = await world.reconcile()
    assert outcome == Requeue(3.0)
    assert ANN_GROUP_BEING_CREATED in world.content()["metadata"]["annotations"]
    assert "status" not in world.content()
    assert len(await world.members_in_azure()) == 2
    assert await world.reconcile() is None
    assert len(await world.members_in_azure()) == 3
    assert world.content()["status"]["readyToUse"] is True


async def test_a_member_failing_for_good_fails_the_group_and_deletes_every_member() -> None:
    world = World()
    world.azure.fail_next("create_snapshot", SnapshotFailed("the snapshot failed"))
    assert await world.reconcile() is None
    content = world.content()
    assert "failed for good" in content["status"]["error"]["message"]
    assert content["status"]["readyToUse"] is False
    assert "volumeGroupSnapshotHandle" not in content["status"]
    assert ANN_GROUP_BEING_CREATED not in content["metadata"]["annotations"]
    assert await world.members_in_azure() == []
    # A final error stands: the group is not cut again.
    assert await world.reconcile() is None
    assert await world.members_in_azure() == []


async def test_a_member_at_its_cap_refuses_the_group_before_any_create() -> None:
    world = World()
    full = world.volumes[2]
    for i in range(200):
        world.azure.add_snapshot(VG.snapshot(f"old-{i}"), full, created_at=datetime(2025, 1, 1, tzinfo=UTC))
    assert await world.reconcile() is None
    message = world.content()["status"]["error"]["message"]
    assert full.arm_id in message
    assert world.volumes[0].arm_id not in message
    assert world.azure.call_count("create_snapshot") == 0
    assert ANN_GROUP_BEING_CREATED not in (world.content()["metadata"].get("annotations") or {})


async def test_unknown_class_parameters_are_a_final_error() -> None:
    world = World()
    world.content()["spec"]["volumeGroupSnapshotClassName"] = "odd"
    world.classes.apply("ADDED", {"metadata": {"name": "odd"}, "parameters": {"speed": "fast"}})
    assert await world.reconcile() is None
    assert "speed" in world.content()["status"]["error"]["message"]
    assert world.azure.call_count("create_snapshot") == 0


@pytest.mark.parametrize(("policy", "left"), [("Delete", 0), ("Retain", 3)])
async def test_deletion_follows_the_policy(policy: str, left: int) -> None:
    world = World()
    await world.reconcile()
    content = world.content()
    content["spec"]["deletionPolicy"] = policy
    content["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    # Without being-deleted nothing happens.
    assert await world.reconcile() is None
    assert len(await world.members_in_azure()) == 3
    content["metadata"]["annotations"][ANN_GROUP_BEING_DELETED] = "yes"
    assert await world.reconcile() is None
    assert len(await world.members_in_azure()) == left
    assert FIN_GROUP_CONTENT_BOUND not in content["metadata"]["finalizers"]


async def test_a_deleted_group_whose_cut_never_published_leaves_no_member() -> None:
    world = World()
    first = world.volumes[0]
    world.azure.add_snapshot(VG.snapshot(world.member_name(first)), first)
    content = world.content()
    content["metadata"]["annotations"] = {ANN_GROUP_BEING_CREATED: "yes", ANN_GROUP_BEING_DELETED: "yes"}
    content["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    content["spec"]["deletionPolicy"] = "Retain"
    assert await world.reconcile() is None
    assert await world.members_in_azure() == []
    assert FIN_GROUP_CONTENT_BOUND not in content["metadata"]["finalizers"]


async def test_member_contents_are_released_without_touching_azure() -> None:
    world = World()
    await world.reconcile()
    entry = world.content()["status"]["volumeSnapshotInfoList"][0]
    member = {
        "metadata": {
            "name": "snapcontent-m0",
            "annotations": {ANN_GROUP_MEMBER_HANDLE: HANDLE, ANN_BEING_DELETED: "yes"},
            "finalizers": [FIN_CONTENT_BOUND],
            "deletionTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "driver": groups.GROUP_DRIVER_NAME,
            "deletionPolicy": "Delete",
            "source": {"volumeHandle": entry["volumeHandle"]},
            "volumeSnapshotRef": {"uid": "vs-uid"},
        },
        "status": {"snapshotHandle": entry["snapshotHandle"], "readyToUse": True},
    }
    world.kube.put("volumesnapshotcontents", member)
    member = world.stored_member(member)
    world.members.apply("ADDED", copy.deepcopy(member))
    assert world.member_reconciler.is_ours(member)
    assert await world.member_reconciler.reconcile("snapcontent-m0") is None
    assert member["metadata"]["finalizers"] == []
    assert world.azure.call_count("delete_snapshot") == 0
    assert len(await world.members_in_azure()) == 3


async def test_a_full_pace_makes_the_group_wait_with_an_event_and_no_error() -> None:
    world = World()
    busy = world.volumes[1]
    for i in range(7):
        world.azure.add_snapshot(VG.snapshot(f"recent-{i}"), busy)  # just now, by the fake's clock
    outcome = await world.reconcile()
    assert isinstance(outcome, Requeue)
    assert outcome.after is not None
    assert 200 < outcome.after <= 301
    assert world.azure.call_count("create_snapshot") == 0
    assert "status" not in world.content()
    [event] = world.kube.events
    assert (event["type"], event["reason"]) == ("Warning", "GroupWaitingForBudget")
    assert busy.arm_id in event["message"]


async def test_a_member_content_not_ready_is_made_ready_once_azure_says_so() -> None:
    world = World()
    await world.reconcile()
    entry = world.content()["status"]["volumeSnapshotInfoList"][0]
    member = {
        "metadata": {"name": "snapcontent-m1", "annotations": {ANN_GROUP_MEMBER_HANDLE: HANDLE}},
        "spec": {"driver": groups.GROUP_DRIVER_NAME, "source": {"volumeHandle": entry["volumeHandle"]}},
        "status": {"snapshotHandle": entry["snapshotHandle"], "readyToUse": False},
    }
    world.kube.put("volumesnapshotcontents", member)
    member = world.stored_member(member)
    world.members.apply("ADDED", copy.deepcopy(member))
    snapshot = VG.snapshot(world.member_name(world.volumes[0]))
    world.azure.set_snapshot_state(snapshot, "Creating")
    assert await world.member_reconciler.reconcile("snapcontent-m1") == Requeue()
    assert member["status"]["readyToUse"] is False
    world.azure.set_snapshot_state(snapshot, "Succeeded")
    assert await world.member_reconciler.reconcile("snapcontent-m1") is None
    assert member["status"]["readyToUse"] is True
