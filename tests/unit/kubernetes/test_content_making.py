"""A dynamic VolumeSnapshot's content, made by the operator ahead of snapshot-controller."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, cast

import pytest
from fake_kube import FakeKube
from harness import (
    GROUP,
    SUBSCRIPTION,
    Operator,
    delete_snapshot_as_snapshot_controller,
    recording_fresh,
    seeded_azure,
    volume_snapshot,
)
from harness import dynamic_content as harness_content
from kube_recorder import RecordingApi, reconciler_parts

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.domain import names
from elasticsan_snapshotter.domain.identity import ElasticSanId
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.content_making import content_name
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_BEING_CREATED,
    ANN_BEING_DELETED,
    ANN_CONTENT_MADE,
    FIN_CONTENT_BOUND,
    PERSISTENT_VOLUME,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CONTENT,
)
from elasticsan_snapshotter.kubernetes.snapshot_watch import SnapshotWatcher
from elasticsan_snapshotter.kubernetes.snapshotter import ContentReconciler, create_in_flight
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"
DRIVER = "elasticsan.csi.example.com"
VOLUME = ElasticSanId(SUB, "rg", "san1").volume_group("vg1").volume("vol1")
UID = "0b3c9a52-4d1e-4f7e-9a39-2f1e5d6c7b80"
CONTENT = content_name(UID)
HARNESS_VOLUME = GROUP.volume("vol1")


def _claim(**meta: Any) -> Body:
    return {
        "metadata": {"name": "data", "namespace": "ns", "uid": "pvc-1", "resourceVersion": "7", **meta},
        "spec": {"storageClassName": "esan", "volumeName": "pv-1"},
        "status": {"phase": "Bound"},
    }


def _pv(claim_uid: str = "pvc-1") -> Body:
    return {
        "metadata": {"name": "pv-1", "uid": "pv-1", "resourceVersion": "5"},
        "spec": {
            "csi": {"driver": "iscsi.csi.k8s.io", "volumeHandle": VOLUME.arm_id},
            "claimRef": {"name": "data", "namespace": "ns", "uid": claim_uid},
            "volumeMode": "Filesystem",
        },
    }


def _snapshot(**meta: Any) -> Body:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "snap", "namespace": "ns", "uid": UID, "resourceVersion": "11", **meta},
        "spec": {"source": {"persistentVolumeClaimName": "data"}, "volumeSnapshotClassName": "esan-snap"},
    }


def _class(policy: str = "Delete", **parameters: str) -> Body:
    return {
        "metadata": {"name": "esan-snap"},
        "driver": DRIVER,
        "deletionPolicy": policy,
        "parameters": parameters,
    }


class Parts:
    """The watcher and the content reconciler over one API, sharing their stores as the runtime does."""

    def __init__(
        self, *, snapshot_class: Body | None = None, claim: Body | None = None, pv: Body | None = None
    ):
        self.api = RecordingApi()
        parts = reconciler_parts(self.api, VOLUME, DRIVER)
        self.azure = cast(InMemoryAzure, parts["azure"])
        kube = cast(KubeApi, self.api)
        classes, storage_classes = Store(), Store()
        classes.apply("ADDED", snapshot_class or _class())
        storage_classes.apply("ADDED", {"metadata": {"name": "esan"}, "provisioner": DRIVER})
        volumes = PersistentVolumes(kube)
        volumes.apply("ADDED", pv or _pv())
        self.contents = Store()
        made: set[str] = set()
        self.watcher = SnapshotWatcher(
            **parts,
            snapshot_classes=classes,
            storage_classes=storage_classes,
            volumes=volumes,
            contents=self.contents,
            made=made,
        )
        self.watcher.claims.apply("ADDED", claim or _claim())
        self.reconciler = ContentReconciler(
            **parts,
            contents=self.contents,
            volumes=volumes,
            snapshot_classes=classes,
            snapshots=self.watcher.snapshots,
            made=made,
        )

    async def snapshot_seen(self, vs: Body | None = None) -> None:
        body = self.api.put(VOLUME_SNAPSHOT, vs or _snapshot())
        assert await self.watcher.reconcile(self.watcher.snapshots.apply("ADDED", body)) is None

    def content(self) -> Body | None:
        return self.api.objects.get((VOLUME_SNAPSHOT_CONTENT.plural, "", CONTENT))

    async def reconcile_content(self) -> None:
        stored = self.content()
        assert stored is not None
        self.contents.apply("MODIFIED", copy.deepcopy(stored))
        await self.reconciler.reconcile(CONTENT)


async def test_a_snapshot_that_can_start_gets_the_content_snapshot_controller_would_make() -> None:
    parts = Parts()
    await parts.snapshot_seen()
    made = parts.content()
    assert made is not None
    assert made["metadata"]["finalizers"] == [FIN_CONTENT_BOUND]
    assert made["metadata"]["annotations"] == {ANN_CONTENT_MADE: "yes"}
    spec = made["spec"]
    assert spec["volumeSnapshotRef"] == {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "namespace": "ns",
        "name": "snap",
        "uid": UID,
        "resourceVersion": parts.api.objects[(VOLUME_SNAPSHOT.plural, "ns", "snap")]["metadata"][
            "resourceVersion"
        ],
    }
    assert spec["source"] == {"volumeHandle": VOLUME.arm_id}
    assert (spec["driver"], spec["deletionPolicy"], spec["volumeSnapshotClassName"]) == (
        DRIVER,
        "Delete",
        "esan-snap",
    )
    assert spec["sourceVolumeMode"] == "Filesystem"
    assert parts.contents.get(CONTENT) is not None  # a second event does not try again
    await parts.snapshot_seen()
    assert parts.api.count("create", VOLUME_SNAPSHOT_CONTENT.plural) == 1


@pytest.mark.parametrize(
    ("case", "kwargs", "vs_meta"),
    [
        (
            "class with snapshotter secrets",
            {"snapshot_class": _class(**{"csi.storage.k8s.io/snapshotter-secret-name": "s"})},
            {},
        ),
        ("claim being deleted", {"claim": _claim(deletionTimestamp="2026-12-01T00:00:00Z")}, {}),
        ("PV bound to another claim", {"pv": _pv(claim_uid="pvc-other")}, {}),
        ("VolumeSnapshot being deleted", {}, {"deletionTimestamp": "2026-12-01T00:00:00Z"}),
    ],
)
async def test_no_content_is_made_where_snapshot_controller_must_make_it(
    case: str, kwargs: dict[str, Any], vs_meta: dict[str, Any]
) -> None:
    parts = Parts(**kwargs)
    await parts.snapshot_seen(_snapshot(**vs_meta))
    assert parts.api.count("create", VOLUME_SNAPSHOT_CONTENT.plural) == 0, case


async def test_no_content_is_made_for_a_bound_snapshot_or_when_turned_off() -> None:
    parts = Parts()
    bound = _snapshot()
    bound["status"] = {"boundVolumeSnapshotContentName": CONTENT}
    await parts.snapshot_seen(bound)
    parts.watcher.contents = None  # ESS_CREATE_CONTENTS=false
    await parts.snapshot_seen()
    assert parts.api.count("create", VOLUME_SNAPSHOT_CONTENT.plural) == 0


async def test_a_content_snapshot_controller_made_first_is_left_to_the_ordinary_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = Parts()
    seen = recording_fresh(parts.azure, monkeypatch)
    theirs = {
        "metadata": {"name": CONTENT},
        "spec": {
            "driver": DRIVER,
            "deletionPolicy": "Delete",
            "source": {"volumeHandle": VOLUME.arm_id},
            "volumeSnapshotRef": {"name": "snap", "namespace": "ns", "uid": UID},
            "volumeSnapshotClassName": "esan-snap",
        },
    }
    parts.api.put(VOLUME_SNAPSHOT_CONTENT, theirs)  # not yet in our store: the create meets it
    queued: list[str] = []
    parts.watcher.on_made = queued.append
    await parts.snapshot_seen()
    assert parts.watcher.made == set()
    # The watch is behind (start-up): theirs is read once and queued, not left to its event.
    assert queued == [CONTENT]
    assert parts.contents.get(CONTENT) is not None
    assert parts.api.count("get", VOLUME_SNAPSHOT_CONTENT.plural) == 1
    await parts.reconcile_content()
    # Theirs carries no annotation, so it is fresh by the ordinary rule; the annotation goes on first.
    assert seen == [True]
    assert [w[2] for w in parts.api.writes] == ["main", "status", "main"]


async def test_at_start_up_an_unseen_pv_is_read_once_and_the_made_content_queued_at_once() -> None:
    # The PV watch's first state is still coming (10,000 PVs): the watcher reads the one PV it
    # needs instead of waiting, and the content is queued without waiting for its own event.
    parts = Parts()
    parts.watcher.volumes.apply("DELETED", _pv())
    parts.api.put(PERSISTENT_VOLUME, _pv())
    queued: list[str] = []
    parts.watcher.on_made = queued.append
    await parts.snapshot_seen()
    assert parts.content() is not None
    assert queued == [CONTENT]
    assert parts.api.count("get", PERSISTENT_VOLUME.plural) == 1
    await parts.reconciler.reconcile(CONTENT)  # from the store, as the queue runs it
    content = parts.content()
    assert content is not None
    assert content["status"]["readyToUse"] is True
    assert parts.api.count("list", PERSISTENT_VOLUME.plural) == 0  # the PV read went into the store


async def test_a_made_content_is_cut_without_a_lookup_in_one_more_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = Parts()
    seen = recording_fresh(parts.azure, monkeypatch)
    await parts.snapshot_seen()
    await parts.reconcile_content()
    assert seen == [True]  # made by this process a moment ago: no earlier create can exist
    assert parts.watcher.made == set()
    # The create carried the finalizer, and the content itself marks the create: only the status.
    assert [w[2] for w in parts.api.writes] == ["status"]
    assert parts.api.count("create", VOLUME_SNAPSHOT_CONTENT.plural) == 1
    content = parts.content()
    assert content is not None
    assert content["status"]["readyToUse"] is True
    assert ANN_BEING_CREATED not in content["metadata"]["annotations"]
    assert len(await parts.azure.list_snapshots(VOLUME.volume_group)) == 1


async def test_a_made_content_whose_snapshot_is_gone_is_deleted_with_policy_delete() -> None:
    parts = Parts()
    await parts.snapshot_seen()
    await parts.reconcile_content()
    del parts.api.objects[(VOLUME_SNAPSHOT.plural, "ns", "snap")]
    parts.watcher.snapshots.apply("DELETED", _snapshot())
    await parts.reconcile_content()
    assert (VOLUME_SNAPSHOT_CONTENT.plural, CONTENT) in parts.api.deleted
    assert any(e["reason"] == "ContentReleased" for e in parts.api.events)
    # Marked as snapshot-controller marks it, so the deletion path deletes the Azure snapshot:
    # played here with the last version and the deletionTimestamp the API server would set.
    last = [b for b in parts.api.history if b["metadata"].get("name") == CONTENT][-1]
    assert ANN_BEING_DELETED in last["metadata"]["annotations"]
    last["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    parts.api.put(VOLUME_SNAPSHOT_CONTENT, last)
    assert len(await parts.azure.list_snapshots(VOLUME.volume_group)) == 1
    await parts.reconcile_content()
    assert await parts.azure.list_snapshots(VOLUME.volume_group) == []
    content = parts.content()
    assert content is not None
    assert FIN_CONTENT_BOUND not in content["metadata"]["finalizers"]


async def test_a_made_content_whose_snapshot_is_gone_stays_with_policy_retain() -> None:
    parts = Parts(snapshot_class=_class("Retain"))
    await parts.snapshot_seen()
    await parts.reconcile_content()
    del parts.api.objects[(VOLUME_SNAPSHOT.plural, "ns", "snap")]
    parts.watcher.snapshots.apply("DELETED", _snapshot())
    await parts.reconcile_content()
    assert parts.api.deleted == []
    content = parts.content()
    assert content is not None
    # Marked as snapshot-controller marks a bound one, so deleting it later is not held up.
    assert ANN_BEING_DELETED in content["metadata"]["annotations"]
    deleting = copy.deepcopy(content)
    deleting["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    parts.api.put(VOLUME_SNAPSHOT_CONTENT, deleting)
    await parts.reconcile_content()
    assert FIN_CONTENT_BOUND not in content["metadata"]["finalizers"]
    assert len(await parts.azure.list_snapshots(VOLUME.volume_group)) == 1  # Retain: Azure untouched


async def test_a_made_content_is_not_released_while_its_snapshot_exists_though_unseen() -> None:
    # At start-up the VolumeSnapshot watch may lag: the API is asked before anything is released.
    parts = Parts()
    await parts.snapshot_seen()
    parts.watcher.snapshots.apply("DELETED", _snapshot())
    await parts.reconcile_content()
    assert parts.api.count("get", VOLUME_SNAPSHOT.plural) == 1
    assert parts.api.deleted == []
    content = parts.content()
    assert content is not None
    assert content["status"]["readyToUse"] is True


async def test_a_same_named_snapshot_with_another_uid_does_not_keep_a_made_content() -> None:
    parts = Parts()
    await parts.snapshot_seen()
    await parts.reconcile_content()
    parts.api.put(
        VOLUME_SNAPSHOT, _snapshot(uid="6d1f0c3e-8a2b-4c5d-9e7f-1a2b3c4d5e6f")
    )  # deleted and made again under its name
    parts.watcher.snapshots.apply("DELETED", _snapshot())
    await parts.reconcile_content()
    assert (VOLUME_SNAPSHOT_CONTENT.plural, CONTENT) in parts.api.deleted


def _ready_made(name: str, snapshot_uid: str) -> Body:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": name, "uid": f"uid-{name}", "annotations": {ANN_CONTENT_MADE: "yes"}},
        "spec": {
            "driver": DRIVER_NAME,
            "deletionPolicy": "Delete",
            "source": {"volumeHandle": HARNESS_VOLUME.handle(SUBSCRIPTION)},
            "volumeSnapshotRef": {"name": name, "namespace": "ns", "uid": snapshot_uid},
        },
        "status": {"readyToUse": True, "snapshotHandle": "h", "creationTime": 1, "restoreSize": 1},
    }


def test_the_deletion_of_a_snapshot_queues_the_content_made_for_it() -> None:
    runtime = Operator(FakeKube(), seeded_azure()).runtime
    runtime.on_content(None, _ready_made(CONTENT, UID))
    assert runtime.queues["contents"].pending == 0  # settled
    runtime.on_snapshot("DELETED", _snapshot())
    assert runtime.queues["contents"].pending == 1


async def test_at_start_made_contents_whose_snapshot_is_not_seen_are_queued() -> None:
    runtime = Operator(FakeKube(), seeded_azure()).runtime
    other = "6d1f0c3e-8a2b-4c5d-9e7f-1a2b3c4d5e6f"
    runtime.on_content(None, _ready_made(CONTENT, UID))
    runtime.on_content(None, _ready_made(content_name(other), other))
    runtime.on_snapshot(None, {**_snapshot(), "metadata": {**_snapshot()["metadata"], "name": CONTENT}})
    assert runtime.queues["contents"].pending == 0
    for informer in runtime.informers:
        informer.synced.set()
    await runtime.look_at_made_contents()
    assert runtime.queues["contents"].pending == 1  # only the one whose VolumeSnapshot is not seen


def test_making_is_on_by_default_and_the_setting_turns_it_off() -> None:
    operator = Operator(FakeKube(), seeded_azure())
    runtime = operator.runtime
    assert runtime.snapshot_watcher is not None
    assert runtime.snapshot_watcher.contents is runtime.contents
    runtime.settings = dataclasses.replace(runtime.settings, create_contents=False)
    runtime.build()
    assert runtime.snapshot_watcher is not None
    assert runtime.snapshot_watcher.contents is None


# -- a made content marks its own create: the being-created rules, without the annotation ------


def _made_in_harness(kube: FakeKube, name: str = "snap") -> tuple[Body, str]:
    vs = volume_snapshot(kube, name)
    content = harness_content(kube, vs, HARNESS_VOLUME, annotations={ANN_CONTENT_MADE: "yes"})
    return vs, content["metadata"]["name"]


async def test_a_made_content_is_looked_up_by_name_after_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    # Another process made it and may have sent the create before it died.
    kube, azure = FakeKube(), seeded_azure()
    seen = recording_fresh(azure, monkeypatch)
    _, name = _made_in_harness(kube)
    await Operator(kube, azure).settle()
    assert seen == [False]
    body = kube.get_object(VOLUME_SNAPSHOT_CONTENT, name)
    assert body is not None
    assert body["status"]["readyToUse"] is True
    assert ANN_BEING_CREATED not in (body["metadata"].get("annotations") or {})


async def test_polls_of_an_unready_made_snapshot_write_no_annotation() -> None:
    kube, azure = FakeKube(), seeded_azure()
    vs, name = _made_in_harness(kube)
    snapshot = GROUP.snapshot(names.snapshot_name(vs["metadata"]["uid"]))
    azure.add_snapshot(snapshot, HARNESS_VOLUME, provisioning_state="Creating")
    operator = Operator(kube, azure)
    for _ in range(3):
        operator.deliver_all()
        assert await operator.reconcile("contents", name) is not None
    azure.set_snapshot_state(snapshot, "Succeeded")
    await operator.settle()
    content_patches = [
        r for r in kube.requests if r.method == "PATCH" and r.plural == VOLUME_SNAPSHOT_CONTENT.plural
    ]
    assert [r.subresource for r in content_patches] == ["status", "status"]  # not ready, then ready


@pytest.mark.parametrize("create_reached_azure", [True, False])
async def test_a_made_content_deleted_while_its_create_was_in_flight_and_the_operator_down(
    create_reached_azure: bool,
) -> None:
    kube, azure = FakeKube(), seeded_azure()
    vs, name = _made_in_harness(kube)
    if create_reached_azure:
        await azure.create_snapshot(
            GROUP.snapshot(names.snapshot_name(vs["metadata"]["uid"])), HARNESS_VOLUME
        )
    delete_snapshot_as_snapshot_controller(kube, name)
    await Operator(kube, azure).settle()
    assert kube.get_object(VOLUME_SNAPSHOT_CONTENT, name) is None
    assert await azure.list_snapshots(GROUP) == []


async def test_a_deleted_made_content_waits_while_its_azure_create_is_still_running() -> None:
    kube, azure = FakeKube(), seeded_azure()
    vs, name = _made_in_harness(kube)
    snapshot = GROUP.snapshot(names.snapshot_name(vs["metadata"]["uid"]))
    azure.add_snapshot(snapshot, HARNESS_VOLUME, provisioning_state="Creating")
    delete_snapshot_as_snapshot_controller(kube, name)
    operator = Operator(kube, azure)
    await operator.settle(rounds=3)
    assert kube.get_object(VOLUME_SNAPSHOT_CONTENT, name) is not None  # deleting it now would leak it
    assert azure.call_count("delete_snapshot") == 0
    azure.set_snapshot_state(snapshot, "Succeeded")
    await operator.settle()
    assert kube.get_object(VOLUME_SNAPSHOT_CONTENT, name) is None
    assert await azure.list_snapshots(GROUP) == []


def test_create_in_flight_is_the_annotation_or_a_made_content_not_yet_settled() -> None:
    plain: Body = {"metadata": {"name": "c"}, "spec": {"source": {"volumeHandle": "v"}}}
    annotated: Body = {**plain, "metadata": {"name": "c", "annotations": {ANN_BEING_CREATED: "yes"}}}
    made: Body = {**plain, "metadata": {"name": "c", "annotations": {ANN_CONTENT_MADE: "yes"}}}
    assert not create_in_flight(plain)
    assert create_in_flight(annotated)
    assert create_in_flight(made)
    assert create_in_flight({**made, "status": {"readyToUse": False}})
    assert not create_in_flight({**made, "status": {"readyToUse": True}})
    assert not create_in_flight({**made, "status": {"readyToUse": False, "error": {"message": "x"}}})
