"""The VolumeSnapshot watcher reads claims and classes from its stores, not from the API server."""

from __future__ import annotations

from typing import cast

import pytest
from kube_recorder import RecordingApi, reconciler_parts

from elasticsan_snapshotter.domain.identity import ElasticSanId
from elasticsan_snapshotter.kubernetes.api import Body, KubeApi
from elasticsan_snapshotter.kubernetes.resources import PERSISTENT_VOLUME_CLAIM
from elasticsan_snapshotter.kubernetes.snapshot_watch import SnapshotWatcher
from elasticsan_snapshotter.kubernetes.stores import PersistentVolumes, Store

pytestmark = pytest.mark.unit

SUB = "00000000-0000-0000-0000-000000000001"
DRIVER = "elasticsan.csi.example.com"
SAN = ElasticSanId(SUB, "rg", "san1")
VOLUME = SAN.volume_group("vg1").volume("vol1")
EVENTS = 5


def _claim() -> Body:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "ns", "uid": "pvc-1", "resourceVersion": "7"},
        "spec": {"storageClassName": "esan", "volumeName": "pv-1"},
        "status": {"phase": "Bound"},
    }


def _snapshot(resource_version: int) -> Body:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {
            "name": "snap",
            "namespace": "ns",
            "uid": "vs-1",
            "resourceVersion": str(resource_version),
        },
        "spec": {"source": {"persistentVolumeClaimName": "data"}, "volumeSnapshotClassName": "esan-snap"},
    }


def _watcher(api: RecordingApi) -> SnapshotWatcher:
    parts = reconciler_parts(api, VOLUME, DRIVER)
    kube = cast(KubeApi, api)
    snapshot_classes, storage_classes = Store(), Store()
    snapshot_classes.apply("ADDED", {"metadata": {"name": "esan-snap"}, "driver": DRIVER})
    storage_classes.apply("ADDED", {"metadata": {"name": "esan"}, "provisioner": DRIVER})
    volumes = PersistentVolumes(kube)
    volumes.apply(
        "ADDED",
        {
            "metadata": {"name": "pv-1", "uid": "pv-1", "resourceVersion": "5"},
            "spec": {"csi": {"driver": DRIVER, "volumeHandle": VOLUME.arm_id}},
        },
    )
    return SnapshotWatcher(
        **parts,
        snapshot_classes=snapshot_classes,
        storage_classes=storage_classes,
        volumes=volumes,
    )


async def test_no_claim_read_per_volume_snapshot_event() -> None:
    api = RecordingApi()
    api.put(PERSISTENT_VOLUME_CLAIM, _claim())
    watcher = _watcher(api)
    watcher.claims.apply("ADDED", _claim())  # as the claim watch delivers it
    for version in range(EVENTS):
        key = watcher.snapshots.apply("MODIFIED", _snapshot(10 + version))
        assert await watcher.reconcile(key) is None  # a healthy snapshot: nothing to explain
    assert api.count("get") == 0
    assert api.count("create") == 0  # and no Warning Event


async def test_a_claim_not_yet_watched_is_read_once() -> None:
    api = RecordingApi()
    api.put(PERSISTENT_VOLUME_CLAIM, _claim())
    watcher = _watcher(api)
    for version in range(EVENTS):
        key = watcher.snapshots.apply("MODIFIED", _snapshot(10 + version))
        assert await watcher.reconcile(key) is None
    assert api.count("get", PERSISTENT_VOLUME_CLAIM.plural) == 1
