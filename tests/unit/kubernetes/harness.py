"""The operator's reconcilers over the fake API server and the in-memory Azure, without Kopf.

``Operator`` builds the same :class:`Runtime` the real process builds, feeds it the
fake server's watch events the way the Kopf handlers do, and runs reconciles one key
at a time, so a test decides the interleaving. ``restart()`` is a crash: a new
process with empty stores, which (as Kopf's first LIST does) sees every object once.
The few things other controllers do (snapshot-controller marking and deleting a
content, kube-controller-manager binding) are plain functions here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fake_kube import FakeKube, WatchEvent

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.azure.fake import InMemoryAzure
from elasticsan_snapshotter.domain.identity import ElasticSanId, SnapshotId, VolumeGroupId, VolumeId
from elasticsan_snapshotter.domain.mapping import SanIndex
from elasticsan_snapshotter.domain.ports import SnapshotInfo
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.events import EventRecorder
from elasticsan_snapshotter.kubernetes.handlers import Runtime
from elasticsan_snapshotter.kubernetes.resources import (
    ANN_BEING_DELETED,
    ANN_STORAGE_PROVISIONER,
    FIN_CONTENT_BOUND,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    SNAPSHOT_EXPORT,
    STORAGE_CLASS,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CLASS,
    VOLUME_SNAPSHOT_CONTENT,
    Resource,
)
from elasticsan_snapshotter.kubernetes.workqueue import Outcome
from elasticsan_snapshotter.settings import Settings

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
SAN = ElasticSanId(SUBSCRIPTION, "rg", "san1")
GROUP = VolumeGroupId(SAN, "group1")
NAMESPACE = "ns"


def seeded_azure(volumes: Iterable[str] = ("vol1",)) -> InMemoryAzure:
    azure = InMemoryAzure(export_seconds=30.0)
    azure.add_elastic_san(SAN, base_size_tib=4)
    azure.add_volume_group(GROUP)
    for name in volumes:
        azure.add_volume(GROUP.volume(name), 10)
    return azure


QUEUES = {
    VOLUME_SNAPSHOT_CONTENT.plural: "contents",
    PERSISTENT_VOLUME_CLAIM.plural: "claims",
    PERSISTENT_VOLUME.plural: "volumes",
    SNAPSHOT_EXPORT.plural: "exports",
}


@dataclass
class Operator:
    kube: FakeKube
    azure: InMemoryAzure
    runtime: Runtime = field(init=False)
    pending: dict[str, set[str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """A new operator process: empty stores, then every object once (Kopf's first LIST)."""
        settings = Settings(subscription_id=SUBSCRIPTION, managed_sans=(SAN.arm_id,))
        self.runtime = Runtime(
            settings=settings,
            azure=self.azure,
            index=SanIndex(self.azure, [SAN]),
            api=self.kube,
            recorder=EventRecorder(self.kube),
        )
        self.runtime.build()
        self.pending = {name: set() for name in QUEUES.values()}
        self.kube.take_watch()
        for plural in (
            STORAGE_CLASS.plural,
            VOLUME_SNAPSHOT_CLASS.plural,
            PERSISTENT_VOLUME.plural,
            PERSISTENT_VOLUME_CLAIM.plural,
            SNAPSHOT_EXPORT.plural,
            VOLUME_SNAPSHOT_CONTENT.plural,
        ):
            resource = _resource(plural)
            for obj in self.kube.all(resource):
                self.deliver(WatchEvent("ADDED", resource, obj))

    def deliver(self, event: WatchEvent) -> None:
        """What the handlers do with one watch event (handlers.py)."""
        rt, body, kind = self.runtime, event.object, event.type
        plural = event.resource.plural
        if plural == VOLUME_SNAPSHOT_CLASS.plural:
            rt.on_snapshot_class(kind, body)
        elif plural == STORAGE_CLASS.plural:
            rt.on_storage_class(kind, body)
        elif plural == VOLUME_SNAPSHOT_CONTENT.plural:
            assert rt.content_reconciler is not None
            if rt.content_reconciler.is_ours(body):
                self._enqueue("contents", rt.contents.apply(kind, body), kind)
        elif plural == PERSISTENT_VOLUME.plural:
            assert rt.volumes is not None
            assert rt.volume_releaser is not None
            key = rt.volumes.apply(kind, body)
            if kind != "DELETED" and rt.volume_releaser.is_ours(body):
                self._enqueue("volumes", key, kind)
        elif plural == PERSISTENT_VOLUME_CLAIM.plural:
            assert rt.claim_reconciler is not None
            if rt.claim_reconciler.is_ours(body):
                self._enqueue("claims", rt.claims.apply(kind, body), kind)
        elif plural == SNAPSHOT_EXPORT.plural:
            self._enqueue("exports", rt.exports.apply(kind, body), kind)

    def _enqueue(self, queue: str, key: str, kind: str) -> None:
        if kind == "DELETED":
            self.pending[queue].discard(key)
        else:
            self.pending[queue].add(key)

    def deliver_all(self) -> None:
        for event in self.kube.take_watch():
            self.deliver(event)

    async def reconcile(self, queue: str, key: str) -> Outcome:
        reconcilers: dict[str, Any] = {
            "contents": self.runtime.content_reconciler,
            "claims": self.runtime.claim_reconciler,
            "volumes": self.runtime.volume_releaser,
            "exports": self.runtime.export_reconciler,
        }
        outcome: Outcome = await reconcilers[queue].reconcile(key)
        if outcome is None:
            self.pending[queue].discard(key)
        return outcome

    async def settle(self, rounds: int = 20) -> None:
        """Deliver events and reconcile every pending key until nothing is pending (or rounds run out)."""
        for _ in range(rounds):
            sync_snapshots_as_snapshot_controller(self.kube)
            self.deliver_all()
            work = [(q, k) for q, keys in self.pending.items() for k in sorted(keys)]
            if not work:
                return
            for queue, key in work:
                await self.reconcile(queue, key)


def _resource(plural: str) -> Resource:
    from fake_kube import RESOURCES

    return RESOURCES[plural]


# --- objects other controllers and users make ------------------------------------------------


def volume_snapshot(kube: FakeKube, name: str, *, claim: str = "data") -> Body:
    return kube.seed(
        VOLUME_SNAPSHOT,
        {
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"source": {"persistentVolumeClaimName": claim}, "volumeSnapshotClassName": "elasticsan"},
        },
    )


def dynamic_content(
    kube: FakeKube,
    vs: Body,
    volume: VolumeId,
    *,
    policy: str = "Delete",
    annotations: dict[str, str] | None = None,
    status: Body | None = None,
) -> Body:
    """The content snapshot-controller makes for ``vs`` (bound, with its finalizer)."""
    name = f"snapcontent-{vs['metadata']['uid']}"
    body: Body = {
        "metadata": {"name": name, "finalizers": [FIN_CONTENT_BOUND], "annotations": dict(annotations or {})},
        "spec": {
            "driver": DRIVER_NAME,
            "deletionPolicy": policy,
            "source": {"volumeHandle": volume.handle(SUBSCRIPTION)},
            "volumeSnapshotRef": {
                "kind": "VolumeSnapshot",
                "name": vs["metadata"]["name"],
                "namespace": NAMESPACE,
                "uid": vs["metadata"]["uid"],
            },
            "volumeSnapshotClassName": "elasticsan",
        },
    }
    if status is not None:
        body["status"] = copy.deepcopy(status)
    created = kube.seed(VOLUME_SNAPSHOT_CONTENT, body)
    kube.patch_status_direct(VOLUME_SNAPSHOT_CONTENT, name, status)
    vs_status = {"boundVolumeSnapshotContentName": name, "readyToUse": False}
    kube.patch_status_direct(VOLUME_SNAPSHOT, vs["metadata"]["name"], vs_status, NAMESPACE)
    return kube.get_object(VOLUME_SNAPSHOT_CONTENT, name) or created


async def snapshot_taken(kube: FakeKube, azure: InMemoryAzure, name: str = "snap") -> tuple[Operator, str]:
    """A VolumeSnapshot of ``vol1``, its content, and the operator run until it settles; returns the content's name."""
    content = dynamic_content(kube, volume_snapshot(kube, name), GROUP.volume("vol1"))["metadata"]["name"]
    operator = Operator(kube, azure)
    await operator.settle()
    return operator, content


def delete_snapshot_as_snapshot_controller(kube: FakeKube, content_name: str) -> None:
    """A user deleted the VolumeSnapshot: snapshot-controller marks the content, then deletes it (policy Delete)."""
    content = kube.get_object(VOLUME_SNAPSHOT_CONTENT, content_name)
    assert content is not None
    kube.patch_direct(
        VOLUME_SNAPSHOT_CONTENT, content_name, {"metadata": {"annotations": {ANN_BEING_DELETED: "yes"}}}
    )
    if content["spec"]["deletionPolicy"] == "Delete":
        kube.delete_direct(VOLUME_SNAPSHOT_CONTENT, content_name)


def sync_snapshots_as_snapshot_controller(kube: FakeKube) -> None:
    """snapshot-controller copies a bound content's status to its VolumeSnapshot."""
    for vs in kube.all(VOLUME_SNAPSHOT):
        status = vs.get("status") or {}
        content = kube.get_object(VOLUME_SNAPSHOT_CONTENT, status.get("boundVolumeSnapshotContentName") or "")
        if content is None:
            continue
        wanted = dict(status)
        source = content.get("status") or {}
        wanted["readyToUse"] = bool(source.get("readyToUse"))
        for field_name in ("restoreSize", "error"):
            if source.get(field_name) is not None:
                wanted[field_name] = source[field_name]
        if wanted != status:
            kube.patch_status_direct(
                VOLUME_SNAPSHOT, vs["metadata"]["name"], wanted, vs["metadata"]["namespace"]
            )


def export(kube: FakeKube, name: str = "copy", **source: str) -> Body:
    """An ElasticSanSnapshotExport as a user writes it (``volumeSnapshotName="snap"`` and so on)."""
    return kube.seed(
        SNAPSHOT_EXPORT,
        {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": {"source": dict(source)}},
    )


async def exported(operator: Operator, name: str = "copy") -> Body:
    """The export after one reconcile of it."""
    operator.deliver_all()
    await operator.reconcile("exports", f"{NAMESPACE}/{name}")
    body = operator.kube.get_object(SNAPSHOT_EXPORT, name, NAMESPACE)
    assert body is not None
    return body


def storage_class(kube: FakeKube, name: str = "elasticsan", **parameters: str) -> Body:
    return kube.seed(
        STORAGE_CLASS,
        {
            "metadata": {"name": name},
            "provisioner": DRIVER_NAME,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
            "parameters": dict(parameters),
        },
    )


def claim(kube: FakeKube, name: str, *, storage_class_name: str = "elasticsan", size: str = "10Gi") -> Body:
    """A claim kube-controller-manager has handed to our provisioner."""
    return kube.seed(
        PERSISTENT_VOLUME_CLAIM,
        {
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "annotations": {ANN_STORAGE_PROVISIONER: DRIVER_NAME},
            },
            "spec": {
                "storageClassName": storage_class_name,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}},
            },
        },
    )


def recording_fresh(azure: InMemoryAzure, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The ``fresh`` flag of every snapshot create ``azure`` is asked for, in order."""
    seen: list[bool] = []
    create = azure.create_snapshot

    async def create_snapshot(snapshot: SnapshotId, source: VolumeId, **kwargs: Any) -> SnapshotInfo:
        seen.append(bool(kwargs.get("fresh")))
        return await create(snapshot, source, **kwargs)

    monkeypatch.setattr(azure, "create_snapshot", create_snapshot)
    return seen
