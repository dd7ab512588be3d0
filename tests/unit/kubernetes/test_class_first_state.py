"""VolumeSnapshotClasses and StorageClasses at start-up: decisions wait for their first state.

A VolumeSnapshot event can come before its class's (start-up, or a class applied after the
snapshot). The class is then looked at again when it comes, and the reconcilers start only
once the classes are listed, so no Warning says a class is missing that merely is not seen yet.
"""

from __future__ import annotations

import asyncio

import pytest
from fake_kube import FakeKube
from harness import GROUP, NAMESPACE, Operator, seeded_azure

from elasticsan_snapshotter import DRIVER_NAME
from elasticsan_snapshotter.kubernetes.api import Body
from elasticsan_snapshotter.kubernetes.content_making import content_name
from elasticsan_snapshotter.kubernetes.handlers import CLASS_KINDS, Runtime
from elasticsan_snapshotter.kubernetes.resources import (
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    STORAGE_CLASS,
    VOLUME_SNAPSHOT,
    VOLUME_SNAPSHOT_CLASS,
    VOLUME_SNAPSHOT_CONTENT,
)

pytestmark = pytest.mark.unit

UID = "5f0e2c1a-7b3d-4e6f-8a9b-0c1d2e3f4a5b"


def _seed(kube: FakeKube) -> Body:
    """A bound claim of our StorageClass on a PV of ``vol1``, and a VolumeSnapshot of it."""
    kube.seed(STORAGE_CLASS, {"metadata": {"name": "elasticsan"}, "provisioner": DRIVER_NAME})
    kube.seed(
        PERSISTENT_VOLUME,
        {
            "metadata": {"name": "pv-data"},
            "spec": {
                "csi": {"driver": "iscsi.csi.k8s.io", "volumeHandle": GROUP.volume("vol1").arm_id},
                "claimRef": {"name": "data", "namespace": NAMESPACE, "uid": "uid-data"},
                "volumeMode": "Filesystem",
            },
        },
    )
    kube.seed(
        PERSISTENT_VOLUME_CLAIM,
        {
            "metadata": {"name": "data", "namespace": NAMESPACE, "uid": "uid-data"},
            "spec": {"storageClassName": "elasticsan", "volumeName": "pv-data"},
            "status": {"phase": "Bound"},
        },
    )
    return kube.seed(
        VOLUME_SNAPSHOT,
        {
            "metadata": {"name": "snap", "namespace": NAMESPACE, "uid": UID},
            "spec": {"source": {"persistentVolumeClaimName": "data"}, "volumeSnapshotClassName": "esan-snap"},
        },
    )


def _class() -> Body:
    return {"metadata": {"name": "esan-snap"}, "driver": DRIVER_NAME, "deletionPolicy": "Delete"}


def _fed(kube: FakeKube) -> tuple[Runtime, str]:
    """A runtime that has seen the claim, the PV and the VolumeSnapshot, and no class yet."""
    vs = _seed(kube)
    runtime = Operator(kube, seeded_azure()).runtime
    for plural, handler in (
        (STORAGE_CLASS, runtime.on_storage_class),
        (PERSISTENT_VOLUME, runtime.on_volume),
        (PERSISTENT_VOLUME_CLAIM, runtime.on_claim),
    ):
        for body in kube.all(plural):
            handler(None, body)
    runtime.on_snapshot(None, vs)
    return runtime, f"{NAMESPACE}/snap"


def _made(kube: FakeKube) -> Body | None:
    return kube.get_object(VOLUME_SNAPSHOT_CONTENT, content_name(UID))


async def test_a_snapshot_seen_before_its_class_is_looked_at_again_when_the_class_comes() -> None:
    kube = FakeKube()
    runtime, key = _fed(kube)
    watcher = runtime.snapshot_watcher
    assert watcher is not None
    assert await watcher.reconcile(key) is not None  # our claim, no such class: a Warning, a recheck
    assert _made(kube) is None
    runtime.on_snapshot_class(None, _class())
    assert runtime.queues["snapshots"].pending == 1
    assert await watcher.reconcile(key) is None
    assert _made(kube) is not None


async def _settled() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_the_reconcilers_start_once_the_classes_are_listed() -> None:
    kube = FakeKube()
    runtime, _ = _fed(kube)
    try:
        runtime.start()
        await _settled()
        assert kube.events_about("snap") == []  # not reconciled yet: no false SnapshotClassMissing
        runtime.on_snapshot_class(None, _class())  # the classes' first state
        for informer in runtime.informers:
            if informer.resource.plural in CLASS_KINDS:
                informer.synced.set()
        await _settled()
        assert _made(kube) is not None
        assert kube.events_about("snap", "SnapshotClassMissing") == []
    finally:
        await runtime.close()


async def test_without_the_classes_listed_the_reconcilers_start_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from elasticsan_snapshotter.kubernetes import handlers

    monkeypatch.setattr(handlers, "CLASSES_LISTED_TIMEOUT", 0.05)
    kube = FakeKube()
    runtime, _ = _fed(kube)
    try:
        runtime.start()
        for _ in range(50):
            await asyncio.sleep(0.01)
            if kube.events_about("snap", "SnapshotClassMissing"):
                break
        assert kube.events_about("snap", "SnapshotClassMissing")
        assert "not listed after" in caplog.text
    finally:
        await runtime.close()


def test_the_classes_come_through_the_operators_informers() -> None:
    runtime = Operator(FakeKube(), seeded_azure()).runtime
    watched = {informer.resource.plural for informer in runtime.informers}
    assert VOLUME_SNAPSHOT_CLASS.plural in watched
    assert STORAGE_CLASS.plural in watched
